#include "engine/compile/argo.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include <yaml-cpp/yaml.h>

#include "engine/expr.h"
#include "engine/graph.h"
#include "engine/sha256.h"
#include "operators/kubernetes_manifests.h"

namespace sluice::compile {
namespace {

constexpr const char* kArgoApi = "argoproj.io/v1alpha1";

// The fixed shell wrapper every container step runs under. It makes the
// step's working directory on the shared workspace, runs the step's argv
// (passed as "$@", never spliced into this text), then publishes declared
// outputs where Argo's output parameters read them.
constexpr const char* kWrapperScript =
    "set -u\n"
    "mkdir -p \"$SLUICE_WORKDIR\" /tmp/sluice || exit 70\n"
    "cd \"$SLUICE_WORKDIR\" || exit 70\n"
    "\"$@\"\n"
    "rc=$?\n"
    "if [ \"$rc\" -eq 0 ]; then\n"
    "  for o in $SLUICE_ARTIFACTS; do\n"
    "    if [ -e \"${o#*=}\" ]; then printf '%s' \"$SLUICE_WORKDIR/${o#*=}\" > \"/tmp/sluice/artifact-${o%%=*}\";\n"
    "    else echo \"sluice: declared output artifact '${o%%=*}' at ${o#*=} does not exist\" >&2; rc=1; fi\n"
    "  done\n"
    "  for o in $SLUICE_PARAMS; do\n"
    "    cp \"${o#*=}\" \"/tmp/sluice/param-${o%%=*}\" || { echo \"sluice: declared output param '${o%%=*}' at ${o#*=} does not exist\" >&2; rc=1; }\n"
    "  done\n"
    "  if [ -n \"$SLUICE_METRICS\" ]; then cp \"$SLUICE_METRICS\" /tmp/sluice/metrics.json || rc=1; fi\n"
    "fi\n"
    "exit \"$rc\"\n";

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

struct Segment {
  bool expression = false;
  std::string text;
};

// Splits "a {{ x }} b" into literal and expression segments.
std::vector<Segment> Segments(const std::string& text) {
  std::vector<Segment> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("{{", pos);
    if (open == std::string::npos) {
      out.push_back({false, text.substr(pos)});
      break;
    }
    size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) {
      out.push_back({false, text.substr(pos)});
      break;
    }
    if (open > pos) out.push_back({false, text.substr(pos, open - pos)});
    out.push_back({true, Trim(std::string_view(text).substr(open + 2, close - open - 2))});
    pos = close + 2;
  }
  return out;
}

std::string DurationString(Duration d) {
  auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

int64_t CeilSeconds(Duration d) { return (d.count() + 999) / 1000; }

std::string CpuQuantity(int64_t millis) {
  if (millis % 1000 == 0) return std::to_string(millis / 1000);
  return std::to_string(millis) + "m";
}

std::string MemoryQuantity(int64_t bytes) {
  const int64_t gi = int64_t{1} << 30, mi = int64_t{1} << 20, ki = int64_t{1} << 10;
  if (bytes % gi == 0) return std::to_string(bytes / gi) + "Gi";
  if (bytes % mi == 0) return std::to_string(bytes / mi) + "Mi";
  if (bytes % ki == 0) return std::to_string(bytes / ki) + "Ki";
  return std::to_string(bytes);
}

// Bracket access for Argo expressions, safe for names with dashes.
std::string TaskExpr(const std::string& step) { return "tasks['" + step + "']"; }

bool HasOutputs(const StepSpec& step) {
  return !step.output_artifacts.empty() || !step.output_params.empty() || step.metrics_file.has_value();
}

// The outputs of a template that publishes them from /tmp/sluice (see
// kWrapperScript).
Json OutputParameters(const StepSpec& step) {
  Json outputs = Json::array();
  for (const auto& p : step.output_params)
    outputs.push_back({{"name", p.name}, {"valueFrom", {{"path", "/tmp/sluice/param-" + p.name}}}});
  for (const auto& a : step.output_artifacts)
    outputs.push_back({{"name", "sluice-artifact-" + a.name},
                       {"valueFrom", {{"path", "/tmp/sluice/artifact-" + a.name}}}});
  if (step.metrics_file)
    outputs.push_back({{"name", "sluice-metrics"}, {"valueFrom", {{"path", "/tmp/sluice/metrics.json"}}}});
  return outputs;
}

class Compiler {
 public:
  Compiler(const PipelineSpec& spec, const std::string& pipeline_dir, const ArgoOptions& options)
      : spec_(spec), pipeline_dir_(pipeline_dir), options_(options) {}

  ArgoOutput Run();

 private:
  // A step's container/resource template is reached through a DAG task; the
  // task's arguments carry every value the template needs.
  struct TaskBuild {
    Json task = Json::object();
    Json args = Json::array();            // task arguments.parameters
    Json inputs = Json::array();          // template inputs.parameters
    std::map<std::string, std::string> arg_names;  // DAG-level value -> arg name
    bool item_dependent_any = false;
    std::string input_args;  // "name=aN ..." for the sluice.dev/inputs annotation
  };

  void Fail(const SourceLocation& loc, std::string message) {
    output_.errors.push_back({loc, std::move(message)});
  }

  // The Argo text for one sluice reference at DAG level, e.g.
  // "{{tasks.train.outputs.parameters.p}}". nullopt (with an error) when
  // Argo cannot express it.
  std::optional<std::string> MapReference(const StepSpec& step, const std::vector<std::string>& path,
                                          const SourceLocation& loc, bool quote_strings);
  // Renders a whole template at DAG level.
  std::optional<std::string> RenderDag(const StepSpec& step, const Template& t);
  // Renders a template for use inside the step's template: every expression
  // becomes {{inputs.parameters.aN}}, with aN passed by the task.
  std::optional<std::string> RenderInTemplate(const StepSpec& step, const Template& t, TaskBuild* b);
  std::optional<std::string> TranslateWhen(const StepSpec& step, const Template& when);

  Json ContainerTemplate(const StepSpec& step, TaskBuild* b);
  Json ResourceTemplate(const StepSpec& step, TaskBuild* b);
  // The working directory of a tfjob/pytorchjob step's pods on the workspace.
  std::string ResourceWorkdir(const StepSpec& step) const {
    return options_.workspace_mount + "/runs/{{workflow.name}}/" + step.name;
  }
  // For a tfjob/pytorchjob step with outputs: a container template that
  // publishes the files its pods left in ResourceWorkdir().
  Json OutputsTemplate(const StepSpec& step);
  void AddStep(const StepSpec& step, const PipelineGraph& graph, int node, Json* tasks);
  std::string MemoKey(const StepSpec& step, const TaskBuild& b);
  Json WorkflowSpec(const PipelineGraph& graph);
  // Checks options_.exclude_steps against the graph (errors via Fail).
  void CheckExcluded(const PipelineGraph& graph);
  bool Excluded(const std::string& step) const { return excluded_.count(step) > 0; }

  const PipelineSpec& spec_;
  std::string pipeline_dir_;
  const ArgoOptions& options_;
  ArgoOutput output_;
  Json templates_ = Json::array();
  std::set<std::string> image_pull_secrets_;
  std::set<std::string> foreach_steps_;
  std::set<std::string> excluded_;
};

std::optional<std::string> Compiler::MapReference(const StepSpec& step,
                                                  const std::vector<std::string>& path,
                                                  const SourceLocation& loc, bool quote_strings) {
  std::string name;
  for (size_t i = 0; i < path.size(); ++i) name += (i ? "." : "") + path[i];
  auto reject = [&](const std::string& why) -> std::optional<std::string> {
    Fail(loc, "cannot compile '" + name + "' to Argo: " + why);
    return std::nullopt;
  };
  const std::string& root = path[0];
  if (root == "params" && path.size() == 2) {
    const ParamSpec* p = spec_.FindParam(path[1]);
    std::string ref = "{{workflow.parameters." + path[1] + "}}";
    if (quote_strings && p != nullptr && p->type == ParamType::kString) return "'" + ref + "'";
    return ref;
  }
  if (root == "item") {
    if (!step.foreach) return reject("'item' outside a foreach step");
    return "{{" + name + "}}";
  }
  if (root == "item_index")
    return reject("Argo's withItems/withParam have no item index; loop over a list of objects "
                  "with an index field, or over a range");
  if (root == "run" && path.size() == 2) {
    if (path[1] == "status") return std::string("{{workflow.status}}");
    if (path[1] == "id" || path[1] == "name") return std::string("{{workflow.name}}");
  }
  if (root == "pipeline" && path.size() == 2) {
    if (path[1] == "name") return spec_.name;
    if (path[1] == "dir") return options_.source_dir;
  }
  if (root == "inputs" && path.size() == 2) {
    auto it = step.inputs.find(path[1]);
    if (it == step.inputs.end()) return reject("the step declares no input '" + path[1] + "'");
    return RenderDag(step, it->second);
  }
  if (root == "steps" && path.size() >= 3) {
    const std::string& target = path[1];
    const StepSpec* up = spec_.FindStep(target);
    if (up == nullptr) return reject("unknown step '" + target + "'");
    if (step.is_finally && !up->is_finally)
      return reject("Argo's exit handler cannot read the outputs of the main DAG's tasks; "
                    "pass what the finally step needs through run.status or a parameter");
    if (path.size() == 3 && path[2] == "phase") return "{{tasks." + target + ".status}}";
    if (path.size() == 5 && path[2] == "outputs") {
      if (path[3] == "params") return "{{tasks." + target + ".outputs.parameters." + path[4] + "}}";
      if (path[3] == "artifacts")
        return "{{tasks." + target + ".outputs.parameters.sluice-artifact-" + path[4] + "}}";
      if (path[3] == "metrics") {
        if (up->foreach) return reject("metrics of foreach step '" + target +
                                       "' are a list Argo expressions cannot index by name; "
                                       "declare an output param instead");
        return "{{=jsonpath(" + TaskExpr(target) + ".outputs.parameters['sluice-metrics'], '$." +
               path[4] + "')}}";
      }
    }
  }
  return reject("no Argo equivalent");
}

std::optional<std::string> Compiler::RenderDag(const StepSpec& step, const Template& t) {
  std::string out;
  for (const Segment& seg : Segments(t.text)) {
    if (!seg.expression) {
      out += seg.text;
      continue;
    }
    auto refs = expr::References(seg.text, /*is_template=*/false);
    if (!refs || refs->size() != 1 || refs->front().ToString() != seg.text) {
      Fail(t.loc, "cannot compile '{{ " + seg.text +
                      " }}' to Argo: only a single name can be substituted here, not an expression");
      return std::nullopt;
    }
    auto mapped = MapReference(step, refs->front().path, t.loc, false);
    if (!mapped) return std::nullopt;
    out += *mapped;
  }
  return out;
}

std::optional<std::string> Compiler::RenderInTemplate(const StepSpec& step, const Template& t,
                                                      TaskBuild* b) {
  std::string out;
  for (const Segment& seg : Segments(t.text)) {
    if (!seg.expression) {
      out += seg.text;
      continue;
    }
    Template one{"{{ " + seg.text + " }}", t.loc};
    auto dag = RenderDag(step, one);
    if (!dag) return std::nullopt;
    if (dag->find("{{") == std::string::npos) {  // a compile-time constant
      out += *dag;
      continue;
    }
    auto [it, inserted] = b->arg_names.emplace(*dag, "a" + std::to_string(b->arg_names.size()));
    if (inserted) {
      b->args.push_back({{"name", it->second}, {"value", *dag}});
      b->inputs.push_back({{"name", it->second}});
      if (dag->find("{{item") != std::string::npos) b->item_dependent_any = true;
    }
    out += "{{inputs.parameters." + it->second + "}}";
  }
  return out;
}

std::optional<std::string> Compiler::TranslateWhen(const StepSpec& step, const Template& when) {
  std::string text = Trim(when.text);
  if (text.rfind("{{", 0) == 0 && text.size() >= 4 && text.compare(text.size() - 2, 2, "}}") == 0 &&
      text.find("{{", 2) == std::string::npos)
    text = Trim(std::string_view(text).substr(2, text.size() - 4));
  auto refs = expr::References(text, /*is_template=*/false);
  if (!refs) {
    Fail(when.loc, "cannot compile `when` to Argo: " + refs.error().message());
    return std::nullopt;
  }
  // Replace names from the end, so earlier offsets stay valid.
  std::vector<expr::Reference> sorted = *refs;
  std::sort(sorted.begin(), sorted.end(),
            [](const expr::Reference& a, const expr::Reference& b) { return a.offset > b.offset; });
  for (const auto& r : sorted) {
    std::string name = r.ToString();
    if (text.compare(r.offset, name.size(), name) != 0) {
      Fail(when.loc, "cannot compile `when` to Argo: indexing ('" + name + "[...]') has no Argo form");
      return std::nullopt;
    }
    auto mapped = MapReference(step, r.path, when.loc, /*quote_strings=*/true);
    if (!mapped) return std::nullopt;
    text.replace(r.offset, name.size(), *mapped);
  }
  // Word operators become govaluate's symbols; `in` has no equivalent.
  std::string out;
  char quote = 0;
  for (size_t i = 0; i < text.size();) {
    char c = text[i];
    if (quote) {
      out += c;
      if (c == quote) quote = 0;
      ++i;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      ++i;
      continue;
    }
    if (text.compare(i, 2, "{{") == 0) {  // keep substituted Argo variables as they are
      size_t close = text.find("}}", i);
      out += text.substr(i, close + 2 - i);
      i = close + 2;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '_')) ++j;
      std::string word = text.substr(i, j - i);
      if (word == "and") out += "&&";
      else if (word == "or") out += "||";
      else if (word == "not") out += "!";
      else if (word == "in") {
        Fail(when.loc, "cannot compile `when` to Argo: the `in` operator has no Argo form");
        return std::nullopt;
      } else out += word;
      i = j;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

std::string Compiler::MemoKey(const StepSpec& step, const TaskBuild& b) {
  // Everything fixed at compile time is hashed now; run-time values enter
  // the key through the template's input parameters.
  Json fixed = {{"type", step.type}, {"image", step.image}, {"config", step.config}};
  Json command = Json::array();
  for (const auto& c : step.command) command.push_back(c.text);
  fixed["command"] = command;
  Json env = Json::object();
  for (const auto& e : step.env) {
    if (std::find(step.cache.env_ignore.begin(), step.cache.env_ignore.end(), e.name) !=
        step.cache.env_ignore.end())
      continue;
    env[e.name] = e.secret ? Json("secret:" + e.secret->name + "/" + e.secret->key) : Json(e.value.text);
  }
  fixed["env"] = env;
  Json code = Json::object();
  for (const auto& file : step.code) {
    auto digest = Sha256File((std::filesystem::path(pipeline_dir_) / file).string());
    code[file] = digest ? *digest : "missing";
  }
  fixed["code"] = code;
  // Argo's cache keys must match ^[a-zA-Z0-9][-a-zA-Z0-9]*$, so run-time
  // values (paths, numbers, JSON lists) enter as a digest computed by an
  // Argo expression over the input parameters.
  std::string name;
  for (char c : step.name) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  std::string key = "sluice-" + name + "-" + Sha256Hex(fixed.dump()).substr(0, 16);
  if (!b.inputs.empty()) {
    std::string list;
    for (const auto& in : b.inputs)
      list += (list.empty() ? "" : ", ") + std::string("inputs.parameters['") + in["name"].get<std::string>() + "']";
    key += "-{{=sprig.sha256sum(toJson([" + list + "]))}}";
  }
  return key;
}

Json Compiler::ContainerTemplate(const StepSpec& step, TaskBuild* b) {
  Json container = Json::object();
  container["image"] = step.image.empty() ? options_.default_image : step.image;
  if (container["image"].get<std::string>().empty())
    Fail(step.loc, "step '" + step.name + "' has no image: set `image:` (or defaults.image) to "
                   "compile it for Kubernetes");
  Json args = Json::array({"sluice-step"});
  for (const auto& c : step.command) {
    auto r = RenderInTemplate(step, c, b);
    args.push_back(r ? *r : "");
  }
  container["command"] = Json::array({"/bin/sh", "-c", kWrapperScript});
  container["args"] = args;

  Json env = Json::array();
  std::string workdir = options_.workspace_mount + "/runs/{{workflow.name}}/" + step.name + "/{{pod.name}}";
  if (step.workdir) {
    auto w = RenderInTemplate(step, *step.workdir, b);
    if (w) workdir += "/" + *w;
  }
  env.push_back({{"name", "SLUICE_WORKDIR"}, {"value", workdir}});
  std::string artifacts, params;
  for (const auto& a : step.output_artifacts) artifacts += (artifacts.empty() ? "" : " ") + a.name + "=" + a.path;
  for (const auto& p : step.output_params) params += (params.empty() ? "" : " ") + p.name + "=" + p.path;
  env.push_back({{"name", "SLUICE_ARTIFACTS"}, {"value", artifacts}});
  env.push_back({{"name", "SLUICE_PARAMS"}, {"value", params}});
  env.push_back({{"name", "SLUICE_METRICS"}, {"value", step.metrics_file.value_or("")}});
  env.push_back({{"name", "SLUICE_RUN_ID"}, {"value", "{{workflow.name}}"}});
  env.push_back({{"name", "SLUICE_STEP"}, {"value", step.name}});
  for (const auto& [name, tmpl] : step.inputs) {
    std::string upper;
    for (char c : name) upper += static_cast<char>(std::isalnum(static_cast<unsigned char>(c)) ? std::toupper(c) : '_');
    auto v = RenderInTemplate(step, tmpl, b);
    env.push_back({{"name", "SLUICE_INPUT_" + upper}, {"value", v ? *v : ""}});
    const std::string prefix = "{{inputs.parameters.";
    if (v && v->rfind(prefix, 0) == 0 && v->size() > prefix.size() + 2 &&
        v->find("}}") == v->size() - 2)
      b->input_args += (b->input_args.empty() ? "" : " ") + name + "=" +
                       v->substr(prefix.size(), v->size() - prefix.size() - 2);
  }
  for (const auto& e : step.env) {
    if (e.secret) {
      env.push_back({{"name", e.name},
                     {"valueFrom", {{"secretKeyRef", {{"name", e.secret->name}, {"key", e.secret->key}}}}}});
      continue;
    }
    auto v = RenderInTemplate(step, e.value, b);
    env.push_back({{"name", e.name}, {"value", v ? *v : ""}});
  }
  container["env"] = env;
  container["volumeMounts"] = Json::array({{{"name", "workspace"}, {"mountPath", options_.workspace_mount}}});

  const Resources& r = step.resources;
  Json requests = Json::object(), limits = Json::object();
  if (r.cpu_millis > 0) requests["cpu"] = limits["cpu"] = CpuQuantity(r.cpu_millis);
  if (r.memory_bytes > 0) requests["memory"] = limits["memory"] = MemoryQuantity(r.memory_bytes);
  if (r.gpu > 0) requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = std::to_string(r.gpu);
  if (!requests.empty()) container["resources"] = {{"requests", requests}, {"limits", limits}};

  Json tmpl = {{"name", step.name}, {"container", container}};
  if (HasOutputs(step)) tmpl["outputs"] = {{"parameters", OutputParameters(step)}};
  return tmpl;
}

Json Compiler::OutputsTemplate(const StepSpec& step) {
  Json container = {{"image", step.image.empty() ? options_.default_image : step.image},
                    {"command", Json::array({"/bin/sh", "-c", kWrapperScript})},
                    {"args", Json::array({"sluice-step", "true"})}};
  std::string artifacts, params;
  for (const auto& a : step.output_artifacts) artifacts += (artifacts.empty() ? "" : " ") + a.name + "=" + a.path;
  for (const auto& p : step.output_params) params += (params.empty() ? "" : " ") + p.name + "=" + p.path;
  container["env"] = Json::array(
      {{{"name", "SLUICE_WORKDIR"}, {"value", ResourceWorkdir(step)}},
       {{"name", "SLUICE_ARTIFACTS"}, {"value", artifacts}},
       {{"name", "SLUICE_PARAMS"}, {"value", params}},
       {{"name", "SLUICE_METRICS"}, {"value", step.metrics_file.value_or("")}},
       {{"name", "SLUICE_RUN_ID"}, {"value", "{{workflow.name}}"}},
       {{"name", "SLUICE_STEP"}, {"value", step.name}}});
  container["volumeMounts"] = Json::array({{{"name", "workspace"}, {"mountPath", options_.workspace_mount}}});
  return {{"name", step.name + "-outputs"},
          {"container", container},
          {"outputs", {{"parameters", OutputParameters(step)}}}};
}

Json Compiler::ResourceTemplate(const StepSpec& step, TaskBuild* b) {
  if (HasOutputs(step) && step.foreach)
    Fail(step.loc, "outputs of foreach " + step.type + " step '" + step.name +
                       "' cannot be compiled to Argo: a resource template reads no files; write "
                       "results under the workspace and read them in a later container step");
  Task task;
  task.run_id = "argo";
  task.pipeline = spec_.name;
  task.step = step.name;
  task.instance = step.name;
  task.operator_type = step.type;
  task.image = step.image.empty() ? options_.default_image : step.image;
  task.resources = step.resources;
  task.timeout = step.timeout;
  task.config = step.config;
  for (const auto& c : step.command) {
    auto r = RenderInTemplate(step, c, b);
    task.argv.push_back(r ? *r : "");
  }
  for (const auto& e : step.env) {
    if (e.secret) {
      task.env[e.name] = "";
      task.secret_env.push_back(e.name);
      task.secret_refs[e.name] = *e.secret;
      continue;
    }
    auto v = RenderInTemplate(step, e.value, b);
    task.env[e.name] = v ? *v : "";
  }
  task.workdir = ResourceWorkdir(step);
  operators::ManifestOptions mo;
  mo.namespace_ = options_.namespace_;
  mo.workspace_pvc = options_.workspace_pvc;
  mo.workspace_mount_path = options_.workspace_mount;
  mo.service_account = options_.service_account;
  auto manifest = operators::BuildManifest(task, mo);
  if (!manifest) {
    Fail(step.loc, manifest.error().message());
    return Json::object();
  }
  Json& meta = (*manifest)["metadata"];
  meta.erase("name");
  meta["generateName"] = step.name + "-";
  meta["labels"]["sluice.dev/run"] = "{{workflow.name}}";
  meta["labels"]["sluice.dev/attempt"] = "{{retries}}";
  meta["annotations"]["sluice.dev/run"] = "{{workflow.name}}";
  if (options_.namespace_.empty()) meta.erase("namespace");
  YAML::Emitter em;
  em << YAML::Load(manifest->dump());
  return {{"name", step.name},
          {"resource",
           {{"action", "create"},
            {"setOwnerReference", true},
            {"successCondition", "status.conditions.#(type==\"Succeeded\").status == \"True\""},
            {"failureCondition", "status.conditions.#(type==\"Failed\").status == \"True\""},
            {"manifest", std::string(em.c_str()) + "\n"}}}};
}

void Compiler::AddStep(const StepSpec& step, const PipelineGraph& graph, int node, Json* tasks) {
  if (step.type != "container" && step.type != "tfjob" && step.type != "pytorchjob") {
    Fail(step.loc, "step '" + step.name + "' of type " + step.type +
                       " cannot be compiled to Argo yet: only container, tfjob and pytorchjob "
                       "steps are (deploy them with `sluice run --executor kubernetes`)");
    return;
  }
  if (step.priority != 0)
    Fail(step.loc, "step '" + step.name + "': priority orders sluice's ready queue and has no "
                       "Argo equivalent; use kubernetes.priorityClassName for pod priority");
  TaskBuild b;
  Json tmpl = step.type == "container" ? ContainerTemplate(step, &b) : ResourceTemplate(step, &b);
  tmpl["metadata"] = {{"annotations",
                       {{"sluice.dev/pipeline", spec_.name},
                        {"sluice.dev/step", step.name},
                        {"sluice.dev/pipeline-digest", spec_.file_digest}}}};
  // What `sluice import-run` needs to rebuild lineage: which input parameter
  // holds each declared input, and the type of each output artifact.
  if (!b.input_args.empty()) tmpl["metadata"]["annotations"]["sluice.dev/inputs"] = b.input_args;
  std::string artifact_types;
  for (const auto& a : step.output_artifacts)
    artifact_types += (artifact_types.empty() ? "" : " ") + a.name + "=" + ArtifactTypeName(a.type);
  if (!artifact_types.empty()) tmpl["metadata"]["annotations"]["sluice.dev/artifacts"] = artifact_types;
  const Json& k8s = step.config.contains("kubernetes") ? step.config["kubernetes"] : Json::object();
  if (k8s.contains("serviceAccountName")) tmpl["serviceAccountName"] = k8s["serviceAccountName"];
  if (k8s.contains("priorityClassName")) tmpl["priorityClassName"] = k8s["priorityClassName"];
  if (k8s.contains("queue"))
    tmpl["metadata"]["labels"] = {{"kueue.x-k8s.io/queue-name", k8s["queue"]}};
  if (k8s.contains("imagePullSecrets") && k8s["imagePullSecrets"].is_array())
    for (const auto& s : k8s["imagePullSecrets"])
      if (s.is_string()) image_pull_secrets_.insert(s.get<std::string>());
  if (step.type == "container") {
    if (!step.resources.node_selector.empty()) tmpl["nodeSelector"] = step.resources.node_selector;
    Json tolerations = Json::array();
    bool gpu_toleration = false;
    for (const auto& t : step.resources.tolerations) {
      tolerations.push_back(t);
      gpu_toleration |= t.value("key", "") == "nvidia.com/gpu";
    }
    if (step.resources.gpu > 0 && !gpu_toleration)
      tolerations.push_back({{"key", "nvidia.com/gpu"}, {"operator", "Exists"}, {"effect", "NoSchedule"}});
    if (!tolerations.empty()) tmpl["tolerations"] = tolerations;
  }
  if (step.timeout) tmpl["activeDeadlineSeconds"] = CeilSeconds(*step.timeout);
  if (step.retries.limit > 0) {
    Json rs = {{"limit", std::to_string(step.retries.limit)},
               {"retryPolicy", step.retries.retry_on == RetryOn::kAlways      ? "Always"
                               : step.retries.retry_on == RetryOn::kOnFailure ? "OnFailure"
                                                                              : "OnError"}};
    if (step.retries.backoff.count() > 0) {
      std::ostringstream factor;
      factor << step.retries.factor;
      rs["backoff"] = {{"duration", DurationString(step.retries.backoff)}, {"factor", factor.str()}};
      if (step.retries.max_backoff) rs["backoff"]["cap"] = DurationString(*step.retries.max_backoff);
    }
    tmpl["retryStrategy"] = rs;
  }

  Json task = {{"name", step.name}, {"template", step.name}};
  if (step.when) {
    auto w = TranslateWhen(step, *step.when);
    if (w) task["when"] = *w;
  }
  // Dependencies: sluice skips the dependents of a skipped step unless they
  // opt in, so a plain dependency waits for Succeeded only.
  std::vector<std::string> deps;
  for (int up : graph.Upstream(node)) {
    const std::string& u = graph.step(up).name;
    deps.push_back(step.upstream_skipped == UpstreamSkippedPolicy::kRun
                       ? "(" + u + ".Succeeded || " + u + ".Skipped)"
                       : u + ".Succeeded");
  }
  std::string depends;
  for (const auto& d : deps) depends += (depends.empty() ? "" : " && ") + d;
  if (!depends.empty()) task["depends"] = depends;

  if (step.cache.enabled && step.inputs.empty() && step.type == "container") {
    // Argo's schema requires configMap.key (its cache ignores it: entries
    // are keys of the ConfigMap) and maxAge ("" = entries never expire).
    Json memo = {{"key", MemoKey(step, b)},
                 {"cache", {{"configMap", {{"name", "sluice-memo-" + spec_.name}, {"key", "sluice"}}}}},
                 {"maxAge", step.cache.max_age ? DurationString(*step.cache.max_age) : ""}};
    tmpl["memoize"] = memo;
  }

  // Fan-out.
  Json loop;
  std::string loop_key;
  if (step.foreach) {
    const ForEachSpec& f = *step.foreach;
    switch (f.kind) {
      case ForEachSpec::Kind::kItems:
        loop_key = "withItems";
        loop = f.items;
        break;
      case ForEachSpec::Kind::kRange:
        if (f.range_step == 1 && f.range_end > f.range_start) {
          loop_key = "withSequence";
          loop = {{"start", std::to_string(f.range_start)}, {"end", std::to_string(f.range_end - 1)}};
        } else {
          loop_key = "withItems";
          loop = Json::array();
          for (int64_t v = f.range_start; f.range_step > 0 ? v < f.range_end : v > f.range_end; v += f.range_step)
            loop.push_back(v);
        }
        break;
      case ForEachSpec::Kind::kExpression: {
        auto p = RenderDag(step, f.expression);
        if (!p) return;
        loop_key = "withParam";
        loop = *p;
        break;
      }
    }
  }
  if (!b.inputs.empty()) tmpl["inputs"] = {{"parameters", b.inputs}};
  if (step.type != "container" && HasOutputs(step) && !step.foreach) {
    // The CR's pods leave their outputs on the workspace; a container step
    // after it publishes them. The step's template is a DAG of the two.
    Json wrapper = {{"name", step.name}, {"metadata", tmpl["metadata"]}};
    tmpl["name"] = step.name + "-job";
    Json job = {{"name", "job"}, {"template", step.name + "-job"}};
    if (!b.inputs.empty()) {
      wrapper["inputs"] = {{"parameters", b.inputs}};
      Json pass = Json::array();
      for (const auto& in : b.inputs) {
        std::string n = in["name"];
        pass.push_back({{"name", n}, {"value", "{{inputs.parameters." + n + "}}"}});
      }
      job["arguments"] = {{"parameters", pass}};
    }
    Json collect = OutputsTemplate(step);
    collect["metadata"] = tmpl["metadata"];
    Json outs = Json::array();
    for (const auto& p : collect["outputs"]["parameters"]) {
      std::string n = p["name"];
      outs.push_back({{"name", n}, {"valueFrom", {{"parameter", "{{tasks.outputs.outputs.parameters." + n + "}}"}}}});
    }
    wrapper["dag"] = {{"tasks", Json::array({job, {{"name", "outputs"},
                                                   {"template", step.name + "-outputs"},
                                                   {"depends", "job.Succeeded"}}})}};
    wrapper["outputs"] = {{"parameters", outs}};
    templates_.push_back(wrapper);
    templates_.push_back(tmpl);
    templates_.push_back(collect);
  } else {
    templates_.push_back(tmpl);
  }

  if (!step.foreach || step.foreach->parallelism <= 0) {
    if (!b.args.empty()) task["arguments"] = {{"parameters", b.args}};
    if (!loop_key.empty()) task[loop_key] = loop;
    tasks->push_back(task);
    return;
  }
  // A parallelism cap: the fan-out runs inside a DAG template of its own.
  Json inner = {{"name", step.name}, {"template", step.name}};
  Json outer_args = Json::array(), wrapper_inputs = Json::array(), inner_args = Json::array();
  for (const auto& a : b.args) {
    std::string value = a["value"];
    if (value.find("{{item") != std::string::npos) {
      inner_args.push_back(a);
    } else {
      outer_args.push_back(a);
      wrapper_inputs.push_back({{"name", a["name"]}});
      inner_args.push_back({{"name", a["name"]}, {"value", "{{inputs.parameters." + a["name"].get<std::string>() + "}}"}});
    }
  }
  if (loop_key == "withParam") {
    outer_args.push_back({{"name", "sluice-items"}, {"value", loop}});
    wrapper_inputs.push_back({{"name", "sluice-items"}});
    loop = "{{inputs.parameters.sluice-items}}";
  }
  if (!inner_args.empty()) inner["arguments"] = {{"parameters", inner_args}};
  inner[loop_key] = loop;
  Json wrapper = {{"name", step.name + "-fanout"},
                  {"parallelism", step.foreach->parallelism},
                  {"dag", {{"tasks", Json::array({inner})}}}};
  if (!wrapper_inputs.empty()) wrapper["inputs"] = {{"parameters", wrapper_inputs}};
  if (tmpl.contains("outputs")) {
    Json outs = Json::array();
    for (const auto& p : tmpl["outputs"]["parameters"]) {
      std::string n = p["name"];
      outs.push_back({{"name", n},
                      {"valueFrom", {{"parameter", "{{tasks." + step.name + ".outputs.parameters." + n + "}}"}}}});
    }
    wrapper["outputs"] = {{"parameters", outs}};
  }
  templates_.push_back(wrapper);
  task["template"] = step.name + "-fanout";
  if (!outer_args.empty()) task["arguments"] = {{"parameters", outer_args}};
  tasks->push_back(task);
}

void Compiler::CheckExcluded(const PipelineGraph& graph) {
  for (const auto& name : options_.exclude_steps) {
    if (graph.Find(name) < 0) {
      Fail({spec_.file, 0, 0}, "--exclude-step " + name + ": the pipeline has no step '" + name + "'");
      continue;
    }
    excluded_.insert(name);
  }
  for (int node = 0; node < graph.size(); ++node) {
    const StepSpec& step = graph.step(node);
    if (Excluded(step.name)) continue;
    for (int up : graph.Upstream(node)) {
      const std::string& u = graph.step(up).name;
      if (Excluded(u))
        Fail(step.loc, "step '" + step.name + "' depends on excluded step '" + u +
                           "': exclude it too (--exclude-step " + step.name + "), or keep '" + u + "'");
    }
  }
}

Json Compiler::WorkflowSpec(const PipelineGraph& graph) {
  Json main_tasks = Json::array(), exit_tasks = Json::array();
  for (int node : graph.TopologicalOrder()) {
    const StepSpec& step = graph.step(node);
    if (Excluded(step.name)) continue;
    AddStep(step, graph, node, graph.IsFinally(node) ? &exit_tasks : &main_tasks);
  }
  Json dag = {{"tasks", main_tasks}};
  if (options_.keep_going) dag["failFast"] = false;
  templates_.insert(templates_.begin(), Json{{"name", "main"}, {"dag", dag}});
  Json spec = {{"entrypoint", "main"}};
  if (!exit_tasks.empty()) {
    templates_.push_back({{"name", "sluice-finally"}, {"dag", {{"tasks", exit_tasks}}}});
    spec["onExit"] = "sluice-finally";
  }
  Json params = Json::array();
  for (const auto& p : spec_.params) {
    Json jp = {{"name", p.name}};
    if (p.default_value) jp["value"] = p.default_value->is_string() ? p.default_value->get<std::string>()
                                                                     : p.default_value->dump();
    if (!p.description.empty()) jp["description"] = p.description;
    params.push_back(jp);
  }
  if (!params.empty()) spec["arguments"] = {{"parameters", params}};
  if (spec_.timeout) spec["activeDeadlineSeconds"] = CeilSeconds(*spec_.timeout);
  if (!options_.service_account.empty()) spec["serviceAccountName"] = options_.service_account;
  if (!image_pull_secrets_.empty()) {
    Json secrets = Json::array();
    for (const auto& s : image_pull_secrets_) secrets.push_back({{"name", s}});
    spec["imagePullSecrets"] = secrets;
  }
  spec["volumes"] = Json::array(
      {{{"name", "workspace"}, {"persistentVolumeClaim", {{"claimName", options_.workspace_pvc}}}}});
  spec["templates"] = templates_;
  return spec;
}

ArgoOutput Compiler::Run() {
  auto graph = PipelineGraph::Build(spec_);
  if (!graph) {
    Fail({spec_.file, 0, 0}, graph.error().message());
    return output_;
  }
  CheckExcluded(*graph);
  Json wf_spec = WorkflowSpec(*graph);
  Json labels = {{"app.kubernetes.io/managed-by", "sluice"},
                 {"sluice.dev/pipeline", operators::LabelValue(spec_.name)}};
  for (const auto& [k, v] : spec_.labels) labels[k] = v;
  Json annotations = {{"sluice.dev/pipeline", spec_.name},
                      {"sluice.dev/pipeline-digest", spec_.file_digest}};
  if (!excluded_.empty()) {
    std::string names;
    for (const auto& n : excluded_) names += (names.empty() ? "" : ",") + n;
    annotations["sluice.dev/excluded-steps"] = names;
  }
  auto metadata = [&](bool generate) {
    Json m = {{"labels", labels}, {"annotations", annotations}};
    if (generate) m["generateName"] = spec_.name + "-";
    else m["name"] = spec_.name;
    if (!options_.namespace_.empty()) m["namespace"] = options_.namespace_;
    return m;
  };
  if (!spec_.schedule) {
    output_.objects.push_back({{"apiVersion", kArgoApi}, {"kind", "Workflow"},
                               {"metadata", metadata(true)}, {"spec", wf_spec}});
    return output_;
  }
  const ScheduleSpec& s = *spec_.schedule;
  output_.objects.push_back({{"apiVersion", kArgoApi}, {"kind", "WorkflowTemplate"},
                             {"metadata", metadata(false)}, {"spec", wf_spec}});
  Json cron = {{"schedules", s.cron},
               {"timezone", s.timezone},
               {"concurrencyPolicy", s.concurrency_policy},
               {"successfulJobsHistoryLimit", s.history_limit},
               {"failedJobsHistoryLimit", s.history_limit},
               {"workflowSpec", {{"workflowTemplateRef", {{"name", spec_.name}}}}}};
  if (s.catchup == "all")
    Fail(s.loc, "schedule catchup: all cannot be compiled to Argo: a CronWorkflow starts at most "
                "the latest missed run (use catchup: latest, or `sluice backfill`)");
  if (s.catchup == "none") cron["startingDeadlineSeconds"] = s.starting_deadline ? CeilSeconds(*s.starting_deadline) : 0;
  else if (s.starting_deadline) cron["startingDeadlineSeconds"] = CeilSeconds(*s.starting_deadline);
  Json args = Json::array();
  for (const auto& [name, t] : s.params) {
    if (!t.IsLiteral()) {
      Fail(t.loc, "schedule param '" + name + "' is templated from the schedule time, which a "
                  "CronWorkflow cannot compute; run it with `sluice serve` instead");
      continue;
    }
    args.push_back({{"name", name}, {"value", t.text}});
  }
  if (!args.empty()) cron["workflowSpec"]["arguments"] = {{"parameters", args}};
  output_.objects.push_back({{"apiVersion", kArgoApi}, {"kind", "CronWorkflow"},
                             {"metadata", metadata(false)}, {"spec", cron}});
  return output_;
}

// Strings YAML would read as something else are quoted.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  static const std::set<std::string> kWords = {"true", "false", "yes", "no", "on", "off", "null",
                                               "True", "False", "Yes", "No", "On", "Off", "Null",
                                               "TRUE", "FALSE", "NULL", "~", "y", "n", "Y", "N"};
  if (kWords.count(s)) return true;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end != nullptr && *end == '\0';
}

void EmitJson(YAML::Emitter& em, const Json& j) {
  if (j.is_object()) {
    em << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      em << YAML::Key << it.key() << YAML::Value;
      EmitJson(em, it.value());
    }
    em << YAML::EndMap;
  } else if (j.is_array()) {
    em << YAML::BeginSeq;
    for (const auto& v : j) EmitJson(em, v);
    em << YAML::EndSeq;
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.find('\n') != std::string::npos) em << YAML::Literal << s;
    else if (NeedsQuotes(s)) em << YAML::DoubleQuoted << s;
    else em << s;
  } else if (j.is_boolean()) {
    em << j.get<bool>();
  } else if (j.is_null()) {
    em << YAML::Null;
  } else if (j.is_number_integer()) {
    em << j.get<int64_t>();
  } else {
    em << j.dump();
  }
}

}  // namespace

std::string CompileError::ToString() const {
  std::string where = loc.ToString();
  return (where.empty() ? "" : where + ": ") + "error: " + message;
}

ArgoOutput CompileToArgo(const PipelineSpec& spec, const std::string& pipeline_dir,
                         const ArgoOptions& options) {
  Compiler compiler(spec, pipeline_dir, options);
  ArgoOutput out = compiler.Run();
  // Report in file order, as lint does.
  std::stable_sort(out.errors.begin(), out.errors.end(), [](const CompileError& a, const CompileError& b) {
    return std::tie(a.loc.line, a.loc.column) < std::tie(b.loc.line, b.loc.column);
  });
  return out;
}

std::string ToYaml(const std::vector<Json>& objects) {
  std::string out;
  for (size_t i = 0; i < objects.size(); ++i) {
    YAML::Emitter em;
    EmitJson(em, objects[i]);
    if (i > 0) out += "---\n";
    out += em.c_str();
    out += "\n";
  }
  return out;
}

}  // namespace sluice::compile
