#include "engine/compile/manifests.h"

#include <algorithm>
#include <cctype>

#include "engine/expr.h"
#include "engine/foreach_group.h"
#include "engine/graph.h"
#include "engine/run/task_builder.h"
#include "operators/kubernetes/manifests.h"

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

// A string of the config section: one {{ expression }} keeps its value's type
// (as the run loop renders an operator program's config, engine/run/operator_programs.cc); a run-time value is a placeholder.
Result<Json> RenderConfig(const Json& config, const Json& scope, const SourceLocation& loc) {
  if (config.is_string()) {
    const std::string& text = config.get_ref<const std::string&>();
    if (text.find("{{") == std::string::npos) return config;
    if (auto v = expr::RenderValue(text, scope)) return *v;
    auto r = RenderOrPlaceholder(Template{text, loc}, scope);
    if (!r) return Error(r.error());
    return Json(*r);
  }
  if (config.is_array() || config.is_object()) {
    Json out = config;
    for (auto it = out.begin(); it != out.end(); ++it) {
      auto v = RenderConfig(*it, scope, loc);
      if (!v) return v;
      *it = std::move(*v);
    }
    return out;
  }
  return config;
}

void ReplaceAll(std::string& text, const std::string& from, const std::string& to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
    text.replace(pos, from.size(), to);
}

// "<x>" -> "x": the name inside a placeholder.
std::string Unbracketed(const std::string& text) {
  return text.size() > 2 && text.front() == '<' && text.back() == '>' ? text.substr(1, text.size() - 2) : text;
}

bool IsSha256(const std::string& digest) {
  return digest.size() == 71 && digest.rfind("sha256:", 0) == 0 &&
         std::all_of(digest.begin() + 7, digest.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// The objects the Kubernetes executor's deploy applies for `step`, rendered
// in `scope` (see manifests.h): the serving operator's own
// (options.serving.build), less the merge patch of the live stable
// Deployment, which a canary's annotation sluice.dev/scales-stable records.
Result<std::vector<Json>> DeployObjects(const StepSpec& step, const Json& scope, const std::string& instance,
                                        const ManifestsOptions& options) {
  auto fail = [&](const std::string& why) {
    return Error(Status::InvalidArgument(step.loc.ToString() + ": deploy step '" + step.name + "': " + why));
  };
  if (!options.serving.available())
    return fail("this sluice was built without the serving operator's manifests; compile it with "
                "operators/serving, or leave the step out with --exclude-step " + step.name);
  if (step.foreach) return fail("foreach: a deploy step deploys one service; use one step per service");
  if (!step.config.is_object()) return fail("the deploy: section must be a map");
  auto rendered = RenderConfig(step.config, scope, step.loc);
  if (!rendered) return Error(rendered.error());
  Json config = std::move(*rendered);
  // As `sluice run` hands a Kubernetes deploy to its controller
  // (RunOperatorsHere): executor kubernetes, the run's namespace, the serving
  // image from the step's image; the version is the run id.
  const Json& service = config.value("service", Json());
  if (service.is_string() && service.get<std::string>().find('<') != std::string::npos)
    return fail("deploy.service: '" + service.get<std::string>() +
                "' is known only at run time, and the Deployment and Service are named after it: write the "
                "name, or take it from a param");
  config["executor"] = "kubernetes";
  Json& k = config["kubernetes"];
  if (k.is_null()) k = Json::object();
  if (!k.is_object()) return fail("deploy.kubernetes: must be a map");
  if (!k.contains("namespace")) {
    // The Jobs' namespace (KubernetesDryRun): the run's, else the kubeconfig
    // context's, else "default"; a dry run needs no kubeconfig.
    std::string ns = options.executor.manifests.namespace_;
    if (ns.empty())
      if (auto rest = k8s::LoadRestConfig(options.executor.kubeconfig)) ns = rest->namespace_;
    k["namespace"] = ns.empty() ? "default" : ns;
  }
  Json& serve = config["serve"];
  if (serve.is_null()) serve = Json::object();
  if (serve.is_object() && !serve.contains("image")) {
    const std::string& image = step.image.empty() ? options.executor.manifests.default_image : step.image;
    if (!image.empty()) serve["image"] = image;
  }
  config["run"] = {{"id", options.run_id}, {"instance", instance}};
  if (!config.contains("version")) config["version"] = options.run_id;
  // The model's digest is known once the upstream step has run: a 64-char
  // token through the builder, then the placeholder.
  const std::string model = config.value("model", "");
  std::string digest_text = config.value("model_digest", "");
  std::string digest_placeholder;
  if (!IsSha256(digest_text)) {
    digest_placeholder = digest_text.empty() ? Placeholder(Unbracketed(model) + ".sha256")
                         : digest_text.rfind("sha256:", 0) == 0 ? digest_text.substr(7)
                                                                 : digest_text;
    config["model_digest"] = "sha256:" + std::string(64, 'f').replace(0, 16, "sluicedigesttokn");
  }
  auto objects = options.serving.build(config);
  if (!objects) return fail(objects.error().message());
  std::vector<Json> out;
  std::string scales_stable;
  for (const Json& o : (*objects)["items"]) {
    const Json& a = o["metadata"].value("annotations", Json::object());
    if (a.value("sluice.dev/apply", "") == "merge-patch") {
      scales_stable = o["metadata"].value("name", "") + "=" + o["spec"].value("replicas", Json(0)).dump();
      continue;
    }
    out.push_back(o);
  }
  for (Json& o : out) {
    if (!scales_stable.empty() && o["kind"] == "Deployment")
      o["metadata"]["annotations"]["sluice.dev/scales-stable"] = scales_stable;
    if (!digest_placeholder.empty()) {
      const std::string token = config["model_digest"].get<std::string>().substr(7);
      std::string text = o.dump();
      ReplaceAll(text, "cas/sha256/" + token.substr(0, 2) + "/" + token,
                 "cas/sha256/" + Placeholder(Unbracketed(digest_placeholder) + "[0:2]") + "/" + digest_placeholder);
      ReplaceAll(text, token, digest_placeholder);
      o = Json::parse(text);
    }
    // Label values must be valid ones ("<run.id>" is not), as the Jobs'.
    for (const char* path : {"/metadata/labels", "/spec/selector/matchLabels", "/spec/template/metadata/labels"}) {
      const Json::json_pointer ptr(path);
      if (!o.contains(ptr) || !o[ptr].is_object()) continue;
      for (auto& [key, value] : o[ptr].items())
        if (value.is_string()) value = operators::LabelValue(value.get<std::string>());
    }
  }
  return out;
}

}  // namespace

namespace {

// What a launcher pod would move, with placeholders for what is known only
// at run time (digests, the store root): the pods `run --dry-run` shows with
// object storage.
void LauncherFiles(const StepSpec& step, const Json& inputs, const ManifestsOptions& options, Task* task) {
  TaskFiles& f = task->files;
  if (inputs.is_object()) {
    for (const auto& [name, value] : inputs.items()) {
      f.inputs.push_back({name, Placeholder("digest of input " + name), value.is_string() ? value.get<std::string>() : value.dump()});
    }
  }
  for (const auto& o : step.output_artifacts) f.outputs.push_back({o.name, "", o.path, o.type});
  for (const auto& p : step.output_params) f.params.push_back({p.name, p.path});
  if (step.metrics_file) f.metrics_file = *step.metrics_file;
  f.code_digest = Placeholder("code archive digest");
  f.code_dir = options.pipeline_dir;
  f.result_key = "results/" + options.run_id + "/" + task->instance + "/attempt-1.json";
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
  // Traffic-validation steps run on the host, acting on a deploy's objects:
  // no object of their own, named on every object instead.
  std::string host_list;
  for (int node : order)
    if (graph->step(node).type == "traffic-validation" && !excluded(graph->step(node).name))
      host_list += (host_list.empty() ? "" : ",") + graph->step(node).name;
  for (int node : order) {
    const StepSpec& step = graph->step(node);
    if (excluded(step.name) || step.type == "traffic-validation") continue;
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
        // Named as the run names them: train[3], or eval[3]/score for a
        // step of a sub-pipeline run with foreach.
        const std::string group = ForeachGroup(step);
        if (expand)
          instance = group.empty() ? step.name + "[" + std::to_string(i) + "]"
                                   : group + "[" + std::to_string(i) + "]" + step.name.substr(group.size());
      }
      // Run-time values render as placeholders; a secret env var is passed
      // by reference (secretKeyRef), so it has no value here.
      TaskBuilder builder(step);
      auto inputs = builder.RenderInputs([&](const std::string&, const Template& t) -> Result<Json> {
        auto v = RenderOrPlaceholder(t, scope);
        if (!v) return Error(v.error());
        return Json(std::move(*v));
      });
      if (!inputs) return Error(inputs.error());
      scope["inputs"] = std::move(*inputs);
      auto render = [&](const Template& t, const std::string&) -> Result<RenderedText> {
        auto v = RenderOrPlaceholder(t, scope);
        if (!v) return Error(v.error());
        return RenderedText{std::move(*v)};
      };
      if (Status s = builder.RenderArgv(render); !s.ok()) return Error(s);
      if (Status s = builder.RenderEnv(render, [](const EnvVarSpec&) -> Result<std::string> { return std::string(); });
          !s.ok())
        return Error(s);
      builder.task().env["SLUICE_RUN_ID"] = options.run_id;
      builder.task().env["SLUICE_STEP"] = instance;
      // A config section that is a template (a resource step's manifest)
      // renders like the argv: run-time values as placeholders.
      if (const Operator* op = OperatorRegistry::OrGlobal(options.executor.operators).Find(step.type);
          op && op->RendersConfig()) {
        auto config = RenderConfig(step.config, scope, step.loc);
        if (!config) return Error(config.error());
        builder.ReplaceConfig(std::move(*config));
      }
      Task task = std::move(builder).Build(options.run_id, spec.name, instance, /*attempt=*/1);
      if (!options.executor.manifests.object_storage.url.empty()) LauncherFiles(step, scope["inputs"], options, &task);
      Result<std::vector<Json>> manifests = std::vector<Json>();
      if (step.type == "deploy") {
        manifests = DeployObjects(step, scope, instance, options);
        if (!manifests) return Error(manifests.error());
        // The Jobs' identity: the same annotations and labels.
        for (Json& m : *manifests) {
          Json& labels = m["metadata"]["labels"];
          labels["sluice.dev/pipeline"] = operators::LabelValue(spec.name);
          labels["sluice.dev/run"] = operators::LabelValue(options.run_id);
          labels["sluice.dev/step"] = operators::LabelValue(step.name);
          Json& annotations = m["metadata"]["annotations"];
          annotations["sluice.dev/instance"] = instance;
          annotations["sluice.dev/pipeline"] = spec.name;
          annotations["sluice.dev/run-id"] = options.run_id;
          annotations["sluice.dev/step"] = step.name;
        }
      } else {
        manifests = KubernetesDryRun(task, options.executor);
        if (!manifests)
          return Error(manifests.error().WithContext(step.loc.ToString() + ": step '" + instance + "'"));
      }
      for (Json& m : *manifests) {
        Json& annotations = m["metadata"]["annotations"];
        if (!depends.empty()) annotations["sluice.dev/depends-on"] = depends;
        if (step.when) annotations["sluice.dev/when"] = step.when->text;
        if (step.is_finally) annotations["sluice.dev/finally"] = "true";
        if (!excluded_list.empty()) annotations["sluice.dev/excluded-steps"] = excluded_list;
        if (!host_list.empty()) annotations["sluice.dev/host-steps"] = host_list;
        objects.push_back(std::move(m));
      }
    }
  }
  return objects;
}

}  // namespace sluice::compile
