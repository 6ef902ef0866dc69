#pragma once
// OperatorPrograms: the built-in operators that run as a program of their
// own (RunOptions::operator_commands, e.g. deploy and traffic-validation
// running sluice-serving). Everything the run loop does differently for such
// a step is decided here:
//   - its operator config section's strings are templates (Prepare),
//   - its argv is the program + ["--config", <the config rendered as JSON>,
//     "--out", "."] with env SLUICE_STATE_DIR (docs/deploy.md),
//   - it acts on the world, so it always runs: never a cache hit,
//   - the executor starts it as a plain process (operator type "container").

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/run/task_builder.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

class OperatorPrograms {
 public:
  // Borrows `commands` (step type -> program argv prefix), which must outlive
  // this object; `state_dir` is the store root the programs are given.
  OperatorPrograms(const std::map<std::string, std::vector<std::string>>& commands, std::string state_dir)
      : commands_(commands), state_dir_(std::move(state_dir)) {}

  // True when `step` runs as a program of its own.
  bool Runs(const StepSpec& step) const { return commands_.count(step.type) > 0; }

  // Deploying and validating act on the world (a service's traffic): such a
  // step always runs, it is never looked up in the cache.
  bool HasSideEffects(const StepSpec& step) const { return Runs(step); }

  // The operator type the executor sees: a built-in operator with a program
  // of its own runs as a plain process.
  std::string TaskOperatorType(const StepSpec& step) const {
    const bool side_effects = HasSideEffects(step);
    return side_effects ? "container" : step.type;
  }

  // Calls `fn` with every string of the step's config section (the
  // templates a program's step renders); nothing for other steps.
  void ForEachConfigString(const StepSpec& step, const std::function<void(const std::string&)>& fn) const;

  // When `step` runs as a program: replaces the Task's argv with the
  // program's (its config section rendered in `scope`, plus "run": {"id":
  // run_id, "instance": instance}) and sets env SLUICE_STATE_DIR. With
  // `config_secret` (the config reads a secret) the config argument is
  // marked secret and given to `mask`. Errors: a config template that does
  // not render, "FILE:L:C: step 'INSTANCE': TYPE config: why".
  Status Apply(const StepSpec& step, const Json& scope, const std::string& run_id, const std::string& instance,
               bool config_secret, const std::function<void(const std::string&)>& mask, TaskBuilder* builder) const;

 private:
  const std::map<std::string, std::vector<std::string>>& commands_;
  std::string state_dir_;
};

}  // namespace sluice
