#include "engine/run/operator_programs.h"

#include "engine/expr.h"

namespace sluice {
namespace {

// Renders every string in an operator's config section: a string that is
// one {{ expression }} keeps its value's type; `${...}` (the operator's own
// placeholders) is left alone.
Result<Json> RenderConfig(const Json& config, const Json& scope) {
  if (config.is_string()) {
    const std::string& text = config.get_ref<const std::string&>();
    if (text.find("{{") == std::string::npos) return config;
    return expr::RenderValue(text, scope);
  }
  if (config.is_array() || config.is_object()) {
    Json out = config;
    for (auto it = out.begin(); it != out.end(); ++it) {
      auto v = RenderConfig(*it, scope);
      if (!v) return v;
      *it = std::move(*v);
    }
    return out;
  }
  return config;
}

void CollectStrings(const Json& j, const std::function<void(const std::string&)>& fn) {
  if (j.is_string()) fn(j.get<std::string>());
  else if (j.is_structured())
    for (const auto& x : j) CollectStrings(x, fn);
}

}  // namespace

void OperatorPrograms::ForEachConfigString(const StepSpec& step,
                                           const std::function<void(const std::string&)>& fn) const {
  if (RendersConfig(step)) CollectStrings(step.config, fn);
}

Status OperatorPrograms::Apply(const StepSpec& step, const Json& scope, const std::string& run_id,
                               const std::string& instance, const Json& run_extra, bool config_secret,
                               const std::function<void(const std::string&)>& mask, TaskBuilder* builder) const {
  if (!RendersConfig(step)) return Status::Ok();
  const std::string where = step.loc.ToString();
  auto at = [&](const std::string& message) { return where.empty() ? message : where + ": " + message; };
  auto config = RenderConfig(step.config, scope);
  if (!config)
    return Status::InvalidArgument(at("step '" + instance + "': " + step.type + " config: " + config.error().message()));
  if (!Runs(step)) {
    // The rendered config becomes an object on the cluster, readable by
    // anyone who can read the object: no secret may reach it.
    if (config_secret)
      return Status::InvalidArgument(at("step '" + instance + "': a " + step.type +
                                        " config cannot read a secret; it would be stored in the object on the "
                                        "cluster (pass it as a Secret the object references)"));
    builder->ReplaceConfig(std::move(*config));
    return Status::Ok();
  }
  auto op = commands_.find(step.type);
  Json run = run_extra.is_object() ? run_extra : Json::object();
  run["id"] = run_id;
  run["instance"] = instance;
  (*config)["run"] = std::move(run);
  std::vector<std::string> argv = op->second;
  argv.push_back("--config");
  argv.push_back(config->dump());
  argv.push_back("--out");
  argv.push_back(".");
  std::vector<bool> argv_secret(argv.size(), false);
  if (config_secret) {
    argv_secret[argv.size() - 3] = true;
    mask(argv[argv.size() - 3]);
  }
  builder->ReplaceArgv(std::move(argv), std::move(argv_secret));
  builder->task().env["SLUICE_STATE_DIR"] = state_dir_;
  return Status::Ok();
}

}  // namespace sluice
