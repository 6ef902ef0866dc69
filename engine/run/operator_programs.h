#pragma once
// OperatorPrograms: the step types whose operator runs a program of its own
// (Operator::RunsOperatorProgram(), e.g. deploy and traffic-validation
// running sluice-serving; RunOptions::operator_commands names the program).
// Everything the run loop does differently for such a step is decided here:
//   - its operator config section's strings are templates (Prepare),
//   - its argv is the program + ["--config", <the config rendered as JSON>,
//     "--out", "."] with env SLUICE_STATE_DIR (docs/deploy.md),
//   - a step whose operator is not Cacheable() acts on the world, so it
//     always runs: never a cache hit,
//   - the executor starts it as a container task (operator type
//     "container"), the way Argo and KFP run their built-in steps.
// A step whose operator RendersConfig() (`type: resource`) shares the first
// rule: its config section is rendered into Task::config.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/operator.h"
#include "engine/run/task_builder.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

class OperatorPrograms {
 public:
  // Borrows `operators` and `commands` (step type -> program argv prefix),
  // which must outlive this object; `state_dir` is the store root the
  // programs are given.
  OperatorPrograms(const OperatorRegistry& operators,
                   const std::map<std::string, std::vector<std::string>>& commands, std::string state_dir)
      : operators_(operators), commands_(commands), state_dir_(std::move(state_dir)) {}

  // True when `step`'s operator runs a program of its own and this run was
  // given the program.
  bool Runs(const StepSpec& step) const {
    const Operator* op = operators_.Find(step.type);
    return op && op->RunsOperatorProgram() && commands_.count(step.type) > 0;
  }

  // A step whose operator is not cacheable acts on the world (deploying,
  // validating a service's traffic): it always runs, it is never looked up
  // in the cache.
  bool HasSideEffects(const StepSpec& step) const {
    const Operator* op = operators_.Find(step.type);
    return op && !op->Cacheable();
  }

  // The operator type the executor sees: a step that runs its operator's
  // program is a container task.
  std::string TaskOperatorType(const StepSpec& step) const { return Runs(step) ? "container" : step.type; }

  // True when the step's config section is rendered per attempt: it runs
  // as a program, or its operator RendersConfig().
  bool RendersConfig(const StepSpec& step) const {
    const Operator* op = operators_.Find(step.type);
    return Runs(step) || (op && op->RendersConfig());
  }

  // Calls `fn` with every string of the step's config section (the
  // templates a rendered config holds); nothing for other steps.
  void ForEachConfigString(const StepSpec& step, const std::function<void(const std::string&)>& fn) const;

  // When `step`'s operator RendersConfig(): replaces the Task's config with
  // the section rendered in `scope`. When `step` runs as a program: replaces the Task's argv with the
  // program's (its config section rendered in `scope`, plus "run": {"id":
  // run_id, "instance": instance} and the fields of `run_extra`) and sets env
  // SLUICE_STATE_DIR. With
  // `config_secret` (the config reads a secret) the config argument is
  // marked secret and given to `mask`. Errors: a config template that does
  // not render, "FILE:L:C: step 'INSTANCE': TYPE config: why".
  Status Apply(const StepSpec& step, const Json& scope, const std::string& run_id, const std::string& instance,
               const Json& run_extra, bool config_secret, const std::function<void(const std::string&)>& mask,
               TaskBuilder* builder) const;

 private:
  const OperatorRegistry& operators_;
  const std::map<std::string, std::vector<std::string>>& commands_;
  std::string state_dir_;
};

}  // namespace sluice
