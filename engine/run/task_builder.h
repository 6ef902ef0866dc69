#pragma once
// TaskBuilder: one step instance, rendered in its resolved scope (params,
// inputs, foreach item), as the Task an executor starts.
//
// Shared by the run loop (engine/run/runner.cc), `sluice run --dry-run` and
// `sluice compile` (engine/compile). They differ only in how a template
// renders, which each gives as a callback: the run loop renders against
// run-time values, records what reads a secret and fails the instance on an
// error; the compilers render values known only at run time as placeholders.
// What a Task is made of is decided here: SLUICE_INPUT_<NAME> per input,
// argv from the command, env from the step's env (a secret one by reference:
// its name in secret_env and secret_refs), and the step's operator type,
// image, resources, timeout and config.

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

// A template rendered to text, and whether its value was computed from a
// secret (the run loop masks such values and keeps them out of records).
struct RenderedText {
  std::string text;
  bool secret = false;
};

class TaskBuilder {
 public:
  // Renders template `t` of the step to text. `field` says which part of the
  // step it is, for error messages: "command", "env NAME" or "workdir". An
  // error stops the build and is returned as it is.
  using RenderText = std::function<Result<RenderedText>(const Template& t, const std::string& field)>;
  // Renders input `name`'s template `t` to its value: a path, or a list of
  // paths for a fan-in. An error stops the build and is returned as it is.
  using RenderInput = std::function<Result<Json>(const std::string& name, const Template& t)>;
  // The value of secret env var `env`; "" where the executor passes the
  // secret by reference (Kubernetes' secretKeyRef) and needs no value.
  using SecretValue = std::function<Result<std::string>(const EnvVarSpec& env)>;

  // Borrows `step`, which must outlive the builder.
  explicit TaskBuilder(const StepSpec& step) : step_(step) {}

  // Renders every input: sets env SLUICE_INPUT_<NAME> (upper case, '-' and
  // '.' as '_') to the value's text (a list as its JSON) and returns the
  // inputs as the templates see them (`inputs.<name>`).
  Result<Json> RenderInputs(const RenderInput& render);

  // Renders the command into argv, in order; argv_secret() tells which
  // elements read a secret.
  Status RenderArgv(const RenderText& render);

  // Renders the step's env, in order, after the inputs' (a step's own
  // variable of the same name wins). A secret variable takes `secret`'s value
  // and is listed in secret_env and secret_refs; derived_env() names the
  // variables whose rendered value reads a secret.
  Status RenderEnv(const RenderText& render, const SecretValue& secret);

  // Replaces the argv rendered so far (an operator that runs as a program
  // of its own has an argv of its own); `secret` tells which elements read
  // a secret, one per element.
  void ReplaceArgv(std::vector<std::string> argv, std::vector<bool> secret) {
    task_.argv = std::move(argv);
    argv_secret_ = std::move(secret);
  }

  // Replaces the step's config section as written with `config` (rendered
  // by the run loop for an operator that RendersConfig()).
  void ReplaceConfig(Json config) { config_ = std::move(config); }

  // The step's workdir rendered, or nullopt when the step sets none.
  Result<std::optional<RenderedText>> RenderWorkdir(const RenderText& render) const;

  // The Task being built; callers add what is theirs (env SLUICE_RUN_ID,
  // workdir, log path, ...) directly.
  Task& task() { return task_; }
  const Task& task() const { return task_; }
  const std::vector<bool>& argv_secret() const { return argv_secret_; }
  const std::set<std::string>& derived_env() const { return derived_env_; }

  // The finished Task, moved out: identity (`run_id`, `pipeline`, the step's
  // name, `instance`, `attempt`) and the step's own fields (operator type,
  // image, resources, timeout, config) set. Call it once.
  Task Build(const std::string& run_id, const std::string& pipeline, const std::string& instance, int attempt);

 private:
  const StepSpec& step_;
  Task task_;
  std::vector<bool> argv_secret_;
  std::set<std::string> derived_env_;
  std::optional<Json> config_;  // ReplaceConfig()'s; else the step's own
};

// NAME for an env variable: upper case, '-' and '.' as '_'.
std::string EnvVarName(const std::string& name);

}  // namespace sluice
