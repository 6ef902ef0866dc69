#include "engine/compile/manifests.h"

#include <algorithm>
#include <cctype>

#include "engine/expr.h"
#include "engine/graph.h"

namespace sluice::compile {
namespace {

// Not Kubernetes' $(VAR) syntax, which the kubelet would try to expand.
std::string Placeholder(const std::string& name) { return "<" + name + ">"; }

// A scope in which every run-time value is a placeholder naming itself.
Json PlaceholderScope(const PipelineSpec& spec, const Json& params, const ManifestsOptions& options) {
  Json steps = Json::object();
  auto add = [&](const StepSpec& s) {
    std::string base = "steps." + s.name;
    Json outputs = {{"params", Json::object()}, {"artifacts", Json::object()}, {"metrics", Json::object()}};
    for (const auto& p : s.output_params) outputs["params"][p.name] = Placeholder(base + ".outputs.params." + p.name);
    for (const auto& a : s.output_artifacts)
      outputs["artifacts"][a.name] = Placeholder(base + ".outputs.artifacts." + a.name);
    steps[s.name] = {{"outputs", outputs}, {"phase", Placeholder(base + ".phase")}};
  };
  for (const auto& s : spec.steps) add(s);
  for (const auto& s : spec.finally_steps) add(s);
  return {{"params", params},
          {"steps", steps},
          {"run", {{"id", options.run_id}, {"name", spec.name}, {"status", Placeholder("run.status")}}},
          {"pipeline", {{"name", spec.name}, {"dir", options.pipeline_dir}}}};
}

// Metrics are open-ended: any name under outputs.metrics renders as a placeholder.
Result<std::string> RenderOrPlaceholder(const Template& t, const Json& scope) {
  auto r = expr::Render(t.text, scope);
  if (r) return *r;
  if (t.text.find(".outputs.metrics.") != std::string::npos) return Placeholder("metrics");
  return Error(Status::InvalidArgument(t.loc.ToString() + ": " + r.error().message()));
}

std::string EnvName(const std::string& name) {
  std::string out;
  for (char c : name) out += static_cast<char>(std::isalnum(static_cast<unsigned char>(c)) ? std::toupper(c) : '_');
  return out;
}

}  // namespace

Result<std::vector<Json>> CompileToManifests(const PipelineSpec& spec, const Json& params,
                                             const ManifestsOptions& options) {
  auto graph = PipelineGraph::Build(spec);
  if (!graph) return Error(graph.error());
  const Json base_scope = PlaceholderScope(spec, params, options);
  auto excluded = [&](const std::string& name) {
    return std::find(options.exclude_steps.begin(), options.exclude_steps.end(), name) !=
           options.exclude_steps.end();
  };
  std::string excluded_list;
  for (const auto& name : options.exclude_steps) {
    if (graph->Find(name) < 0)
      return Error(Status::InvalidArgument("--exclude-step " + name + ": the pipeline has no step '" +
                                           name + "'"));
    excluded_list += (excluded_list.empty() ? "" : ",") + name;
  }
  for (int node = 0; node < graph->size(); ++node) {
    const StepSpec& step = graph->step(node);
    if (excluded(step.name)) continue;
    for (int up : graph->Upstream(node))
      if (excluded(graph->step(up).name))
        return Error(Status::InvalidArgument(
            step.loc.ToString() + ": step '" + step.name + "' depends on excluded step '" +
            graph->step(up).name + "': exclude it too (--exclude-step " + step.name + "), or keep '" +
            graph->step(up).name + "'"));
  }
  std::vector<Json> objects;
  // Main steps in topological order, then the finally steps.
  std::vector<int> order;
  for (bool finally_pass : {false, true})
    for (int node : graph->TopologicalOrder())
      if (graph->IsFinally(node) == finally_pass) order.push_back(node);
  for (int node : order) {
    const StepSpec& step = graph->step(node);
    if (excluded(step.name)) continue;
    std::string depends;
    for (int up : graph->Upstream(node)) depends += (depends.empty() ? "" : ",") + graph->step(up).name;

    // The items this step fans out over, when they are known before the run.
    std::vector<Json> items;
    bool expand = false;
    if (step.foreach) {
      const ForEachSpec& f = *step.foreach;
      if (f.kind == ForEachSpec::Kind::kItems) {
        items = f.items;
        expand = true;
      } else if (f.kind == ForEachSpec::Kind::kRange) {
        for (int64_t v = f.range_start; f.range_step > 0 ? v < f.range_end : v > f.range_end; v += f.range_step)
          items.push_back(v);
        expand = true;
      } else {
        auto v = expr::RenderValue(f.expression.text, base_scope);
        if (v && v->is_array()) {
          items.assign(v->begin(), v->end());
          expand = true;
        } else {
          items.push_back(Placeholder("item"));
        }
      }
    }
    size_t count = step.foreach ? items.size() : 1;
    for (size_t i = 0; i < count; ++i) {
      Json scope = base_scope;
      std::string instance = step.name;
      if (step.foreach) {
        scope["item"] = items[i];
        scope["item_index"] = expand ? Json(static_cast<int64_t>(i)) : Json(Placeholder("item_index"));
        if (expand) instance += "[" + std::to_string(i) + "]";
      }
      Task task;
      task.run_id = options.run_id;
      task.pipeline = spec.name;
      task.step = step.name;
      task.instance = instance;
      task.attempt = 1;
      task.operator_type = step.type;
      task.image = step.image;
      task.resources = step.resources;
      task.timeout = step.timeout;
      task.config = step.config;
      Json inputs = Json::object();
      for (const auto& [name, t] : step.inputs) {
        auto v = RenderOrPlaceholder(t, scope);
        if (!v) return Error(v.error());
        inputs[name] = *v;
        task.env["SLUICE_INPUT_" + EnvName(name)] = *v;
      }
      scope["inputs"] = inputs;
      for (const auto& c : step.command) {
        auto v = RenderOrPlaceholder(c, scope);
        if (!v) return Error(v.error());
        task.argv.push_back(*v);
      }
      for (const auto& e : step.env) {
        if (e.secret) {
          task.env[e.name] = "";
          task.secret_env.push_back(e.name);
          task.secret_refs[e.name] = *e.secret;
          continue;
        }
        auto v = RenderOrPlaceholder(e.value, scope);
        if (!v) return Error(v.error());
        task.env[e.name] = *v;
      }
      task.env["SLUICE_RUN_ID"] = options.run_id;
      task.env["SLUICE_STEP"] = instance;
      auto manifests = KubernetesDryRun(task, options.executor);
      if (!manifests) return Error(manifests.error().WithContext("step '" + instance + "'"));
      for (Json& m : *manifests) {
        Json& annotations = m["metadata"]["annotations"];
        if (!depends.empty()) annotations["sluice.dev/depends-on"] = depends;
        if (step.when) annotations["sluice.dev/when"] = step.when->text;
        if (step.is_finally) annotations["sluice.dev/finally"] = "true";
        if (!excluded_list.empty()) annotations["sluice.dev/excluded-steps"] = excluded_list;
        objects.push_back(std::move(m));
      }
    }
  }
  return objects;
}

}  // namespace sluice::compile
