#include "engine/run/task_builder.h"

#include <cctype>

namespace sluice {

std::string EnvVarName(const std::string& name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == '-' || c == '.') out += '_';
    else out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

Result<Json> TaskBuilder::RenderInputs(const RenderInput& render) {
  Json inputs = Json::object();
  for (const auto& [name, tmpl] : step_.inputs) {
    auto v = render(name, tmpl);
    if (!v) return v;
    task_.env["SLUICE_INPUT_" + EnvVarName(name)] = v->is_string() ? v->get<std::string>() : v->dump();
    inputs[name] = std::move(*v);
  }
  return inputs;
}

Status TaskBuilder::RenderArgv(const RenderText& render) {
  task_.argv.reserve(task_.argv.size() + step_.command.size());
  for (const auto& t : step_.command) {
    auto s = render(t, "command");
    if (!s) return s.error();
    argv_secret_.push_back(s->secret);
    task_.argv.push_back(std::move(s->text));
  }
  return Status::Ok();
}

Status TaskBuilder::RenderEnv(const RenderText& render, const SecretValue& secret) {
  for (const auto& e : step_.env) {
    if (e.secret) {
      auto value = secret(e);
      if (!value) return value.error();
      task_.env[e.name] = std::move(*value);
      task_.secret_env.push_back(e.name);
      task_.secret_refs[e.name] = *e.secret;
      continue;
    }
    auto s = render(e.value, "env " + e.name);
    if (!s) return s.error();
    if (s->secret) derived_env_.insert(e.name);
    task_.env[e.name] = std::move(s->text);
  }
  return Status::Ok();
}

Result<std::optional<RenderedText>> TaskBuilder::RenderWorkdir(const RenderText& render) const {
  if (!step_.workdir) return std::optional<RenderedText>();
  auto w = render(*step_.workdir, "workdir");
  if (!w) return Error(w.error());
  return std::optional<RenderedText>(std::move(*w));
}

Task TaskBuilder::Build(const std::string& run_id, const std::string& pipeline, const std::string& instance,
                        int attempt) {
  task_.run_id = run_id;
  task_.pipeline = pipeline;
  task_.step = step_.name;
  task_.instance = instance;
  task_.attempt = attempt;
  task_.operator_type = step_.type;
  task_.image = step_.image;
  task_.resources = step_.resources;
  task_.timeout = step_.timeout;
  task_.pending_timeout = step_.pending_timeout;
  task_.config = config_ ? std::move(*config_) : step_.config;
  // The step's priority reaches the Kubernetes object (Kueue's priority
  // class for a queued step) as kubernetes.priority; a value written there
  // by hand is replaced.
  if (task_.config.is_object() && task_.config.contains("kubernetes") && task_.config["kubernetes"].is_object()) {
    if (step_.priority != 0) task_.config["kubernetes"]["priority"] = step_.priority;
    else task_.config["kubernetes"].erase("priority");
  }
  return std::move(task_);
}

}  // namespace sluice
