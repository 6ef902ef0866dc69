#include "engine/compile/argo.h"
#include "engine/compile/manifests.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include <yaml-cpp/yaml.h>

#include "engine/expr.h"
#include "engine/foreach_group.h"
#include "engine/graph.h"
#include "engine/quantity.h"
#include "engine/run/task_builder.h"
#include "engine/sha256.h"
#include "engine/text.h"
#include "executors/kubernetes/api/objects.h"

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
    out.push_back({true, std::string(Trim(std::string_view(text).substr(open + 2, close - open - 2)))});
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

// True when one of the step's inputs reads another step's output artifact:
// its value is a path, which says nothing of the content.
bool ReadsAnArtifact(const StepSpec& step) {
  for (const auto& [name, t] : step.inputs) {
    auto refs = expr::References(t.text, true);
    if (!refs) return true;
    for (const auto& r : *refs)
      if (r.path.size() >= 4 && r.path[0] == "steps" && r.path[2] == "outputs" && r.path[3] == "artifacts")
        return true;
  }
  return false;
}

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

// YAML for a Json value; with quote_templates, every string holding "{{"
// or a token is double-quoted (a resource manifest stays valid YAML both
// before and after Argo substitutes it).
void EmitJson(YAML::Emitter& em, const Json& j, bool quote_templates = false);

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
    // With options_.s3, for a container step: the upstream artifacts it
    // reads, as template inputs.artifacts and task arguments.artifacts.
    bool s3_inputs = false;
    std::set<std::string> s3_seen;  // DAG-level values made input artifacts (or reported)
    Json input_artifacts = Json::array();
    Json arg_artifacts = Json::array();
  };

  // Where a container step works and how it reaches its artifacts: the
  // workspace volume, or with options_.s3 an emptyDir of its own.
  static constexpr const char* kS3WorkDir = "/sluice/work";
  static constexpr const char* kS3InputsDir = "/sluice/inputs";
  // With options_.s3: when `dag` is one upstream output artifact
  // ("{{tasks.X.outputs.parameters.sluice-artifact-Y}}"), makes it an input
  // artifact of the step's template and returns the path the command sees;
  // nullopt when `dag` is something else. Fails (and returns "") for a
  // foreach step's artifacts, which Argo cannot gather.
  std::optional<std::string> S3InputArtifact(const StepSpec& step, const std::string& dag, const SourceLocation& loc,
                                             TaskBuild* b);
  // The `s3:` of an output artifact of `step` (ArgoS3).
  Json S3Location(const StepSpec& step, const std::string& artifact) const;

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
  // Every string of an operator's config section through RenderInTemplate
  // (one that cannot be resolved renders as "", reported there).
  // A lone {{ params.x }} of a number or bool param becomes a marker, listed
  // in `typed` with its Argo expression, to stand unquoted in the manifest.
  Json RenderConfigInTemplate(const StepSpec& step, const Json& config, TaskBuild* b,
                              std::vector<std::pair<std::string, std::string>>* typed);
  std::optional<std::string> TranslateWhen(const StepSpec& step, const Template& when);

  Json ContainerTemplate(const StepSpec& step, TaskBuild* b);
  Json ResourceTemplate(const StepSpec& step, const Operator* op, TaskBuild* b);
  // The working directory of a tfjob/pytorchjob step's pods on the workspace.
  std::string ResourceWorkdir(const StepSpec& step) const {
    return options_.workspace_mount + "/runs/{{workflow.name}}/" + step.name;
  }
  // For a tfjob/pytorchjob step with outputs: a container template that
  // publishes the files its pods left in ResourceWorkdir().
  Json OutputsTemplate(const StepSpec& step);
  void AddStep(const StepSpec& step, const PipelineGraph& graph, int node, Json* tasks);
  // A foreach with a parallelism cap: `task` runs a DAG template of its own
  // (<step>-fanout, with `parallelism`) whose one task fans out over `loop`;
  // the values and artifacts that do not change per item pass through it.
  void AddFanOutTask(const StepSpec& step, Json task, const TaskBuild& b, const std::string& loop_key, Json loop,
                     const Json& tmpl, Json* tasks);
  std::string MemoKey(const StepSpec& step, const TaskBuild& b);
  Json WorkflowSpec(const PipelineGraph& graph);
  // Checks options_.exclude_steps against the graph (errors via Fail).
  void CheckExcluded(const PipelineGraph& graph);
  bool Excluded(const std::string& step) const { return excluded_.count(step) > 0; }

  // --- deploy and traffic-validation steps (docs/compile.md) ---
  // A run-time value inside an operator's config. The config goes through
  // the serving operator's own code (ServingObjects) with a token in its
  // place, a valid DNS label, and the token becomes the Argo reference in
  // the text after: {{inputs.parameters.<prefix><text>}} for a parameter,
  // `text` verbatim otherwise. A `raw` value (a number or a bool) loses the
  // JSON quotes around its token.
  struct TokenValue {
    bool param = true;
    bool raw = false;
    std::string text;
  };
  std::string Token(const TokenValue& value);
  // The config with every {{ }} template replaced by tokens, the values
  // passed to the step's template as its input parameters (b).
  std::optional<Json> TokenizeConfig(const StepSpec& step, const Json& config, TaskBuild* b);
  // In a `manifest` (YAML), a raw value becomes an Argo expression,
  // {{=asInt(inputs.parameters['x'])}}, which Argo's lint reads as a
  // placeholder; elsewhere {{inputs.parameters.x}} without quotes.
  std::string Detokenize(std::string text, const std::string& prefix, bool manifest = false) const;
  // The namespace of the serving objects: --namespace, the pipeline's, else
  // the Workflow's own.
  std::string ServingNamespaceToken();
  // What a validation step needs of the deploy step of its service.
  struct DeployPlan {
    std::string step;
    Json service;  // deploy.service as written, to match validation.service
    bool canary = false;
    int64_t total = 0;        // replicas of the service (kubernetes.replicas)
    double traffic = 0;       // the canary's first share
    Json canary_deployment;   // with tokens (prefix "deploy-" in a validation)
    std::string fetch_image;
    Json args = Json::array();  // the deploy step's task arguments (a0...)
  };
  std::map<std::string, DeployPlan> deploy_plans_;
  // The deploy step's template: a DAG (see the .cc). `b` gets its inputs.
  Json DeployTemplate(const StepSpec& step, TaskBuild* b);
  Json ValidationTemplate(const StepSpec& step, const PipelineGraph& graph, int node, TaskBuild* b);
  // Adds `tmpl` to the templates and a task `task` running it to `tasks`:
  // the template's inputs are the {{inputs.parameters.X}} its text uses,
  // each passed by the task as value(X).
  void AddSubTask(Json* tasks, Json tmpl, const std::string& task, const std::string& depends,
                  const std::function<std::string(const std::string&)>& value,
                  const std::string& when = "", bool continue_on_failed = false);
  // A resource template `name` doing `action` with `object` (tokens
  // detokenized with `prefix`).
  Json ObjectTemplate(const std::string& name, const std::string& action, const Json& object,
                      const std::string& prefix, const std::string& success,
                      std::optional<Duration> deadline);
  // The metadata of a template that is part of step `step`'s DAG.
  Json PartMetadata(const StepSpec& step, const std::string& part) const;

  std::map<std::string, TokenValue> tokens_;
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
    if (path.size() >= 3 && path[2] == "outputs" && (up->type == "deploy" || up->type == "traffic-validation"))
      return reject("under Argo, " + up->type + " step '" + target + "' is a DAG of Kubernetes objects and "
                    "checks, not the sluice-serving process that writes these outputs; read them with "
                    "`sluice run`, or from the cluster in a container step");
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

Json Compiler::RenderConfigInTemplate(const StepSpec& step, const Json& config, TaskBuild* b,
                                      std::vector<std::pair<std::string, std::string>>* typed) {
  if (config.is_string()) {
    const std::string& text = config.get_ref<const std::string&>();
    if (text.find("{{") == std::string::npos) return config;
    auto r = RenderInTemplate(step, Template{text, step.loc}, b);
    if (!r) return Json("");
    // A lone {{ params.x }} of a number or bool type is that value in sluice;
    // Argo substitutes text, so it must stand unquoted in the manifest.
    const auto segments = Segments(text);
    if (segments.size() == 1 && segments[0].expression && segments[0].text.rfind("params.", 0) == 0) {
      const ParamSpec* p = spec_.FindParam(segments[0].text.substr(7));
      if (p && (p->type == ParamType::kInt || p->type == ParamType::kNumber || p->type == ParamType::kBool)) {
        std::string marker = "sluice-typed-" + std::to_string(typed->size()) + "-value";
        typed->emplace_back(marker, *r);
        return Json(marker);
      }
    }
    return Json(*r);
  }
  Json out = config;
  if (out.is_structured())
    for (auto& v : out) v = RenderConfigInTemplate(step, v, b, typed);
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
    if (auto path = S3InputArtifact(step, *dag, t.loc, b)) {
      out += *path;
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

std::optional<std::string> Compiler::S3InputArtifact(const StepSpec& step, const std::string& dag,
                                                     const SourceLocation& loc, TaskBuild* b) {
  const std::string head = "{{tasks.", mid = ".outputs.parameters.sluice-artifact-";
  if (!options_.s3 || dag.rfind(head, 0) != 0 || dag.size() < 2 || dag.compare(dag.size() - 2, 2, "}}") != 0)
    return std::nullopt;
  const size_t m = dag.find(mid);
  if (m == std::string::npos) return std::nullopt;
  const std::string up = dag.substr(head.size(), m - head.size());
  const std::string artifact = dag.substr(m + mid.size(), dag.size() - 2 - m - mid.size());
  const std::string name = up + "-" + artifact;
  const std::string path = std::string(kS3InputsDir) + "/" + up + "/" + artifact;
  // Seen before in this step (in its inputs and its command): added, or
  // reported, once.
  if (!b->s3_seen.insert(dag).second) return path;
  if (!b->s3_inputs) {
    Fail(loc, "step '" + step.name + "' of type " + step.type + " reads artifact '" + artifact + "' of step '" + up +
                  "': with S3 artifacts only container steps receive artifacts under Argo; compile without "
                  "--artifacts (the workspace volume) or --exclude-step " + step.name);
    return std::string();
  }
  if (const StepSpec* u = spec_.FindStep(up); u && u->foreach) {
    Fail(loc, "step '" + step.name + "' reads artifact '" + artifact + "' of foreach step '" + up +
                  "': Argo S3 artifacts cannot gather the outputs of a fan-out (argoproj/argo-workflows#861); "
                  "compile without --artifacts (the workspace volume), or pass a parameter instead");
    return std::string();
  }
  b->input_artifacts.push_back({{"name", name}, {"path", path}});
  b->arg_artifacts.push_back({{"name", name}, {"from", "{{tasks." + up + ".outputs.artifacts." + artifact + "}}"}});
  return path;
}

Json Compiler::S3Location(const StepSpec& step, const std::string& artifact) const {
  const ArgoS3& s3 = *options_.s3;
  // One key per pod: the instances of a foreach and the attempts of a
  // retried step do not overwrite each other.
  const std::string key = (s3.prefix.empty() ? "" : s3.prefix + "/") + "argo/{{workflow.name}}/" + step.name +
                          "/{{pod.name}}/" + artifact + ".tgz";
  Json loc = {{"endpoint", s3.endpoint},
              {"bucket", s3.bucket},
              {"key", key},
              {"insecure", s3.insecure},
              {"accessKeySecret", {{"name", s3.secret}, {"key", "AWS_ACCESS_KEY_ID"}}},
              {"secretKeySecret", {{"name", s3.secret}, {"key", "AWS_SECRET_ACCESS_KEY"}}}};
  if (!s3.region.empty()) loc["region"] = s3.region;
  return loc;
}

std::optional<std::string> Compiler::TranslateWhen(const StepSpec& step, const Template& when) {
  std::string text(Trim(when.text));
  if (text.rfind("{{", 0) == 0 && text.size() >= 4 && text.compare(text.size() - 2, 2, "}}") == 0 &&
      text.find("{{", 2) == std::string::npos)
    text = std::string(Trim(std::string_view(text).substr(2, text.size() - 4)));
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
  // Inputs (a component's bound inputs): their templates, as the command's.
  if (!step.inputs.empty()) {
    Json inputs = Json::object();
    for (const auto& [name, t] : step.inputs) inputs[name] = t.text;
    fixed["inputs"] = inputs;
  }
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
  b->s3_inputs = options_.s3.has_value();
  Json args = Json::array({"sluice-step"});
  for (const auto& c : step.command) {
    auto r = RenderInTemplate(step, c, b);
    args.push_back(r ? *r : "");
  }
  container["command"] = Json::array({"/bin/sh", "-c", kWrapperScript});
  container["args"] = args;

  Json env = Json::array();
  const std::string mount = options_.s3 ? kS3WorkDir : options_.workspace_mount;
  std::string workdir =
      options_.s3 ? mount : options_.workspace_mount + "/runs/{{workflow.name}}/" + step.name + "/{{pod.name}}";
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
  container["volumeMounts"] = Json::array({{{"name", "workspace"}, {"mountPath", mount}}});

  const Resources& r = step.resources;
  Json requests = Json::object(), limits = Json::object();
  if (r.cpu_millis > 0) requests["cpu"] = limits["cpu"] = CpuQuantity(r.cpu_millis);
  if (r.memory_bytes > 0) requests["memory"] = limits["memory"] = MemoryQuantity(r.memory_bytes);
  if (r.gpu > 0) requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = std::to_string(r.gpu);
  if (!requests.empty()) container["resources"] = {{"requests", requests}, {"limits", limits}};

  Json tmpl = {{"name", step.name}, {"container", container}};
  if (HasOutputs(step)) tmpl["outputs"] = {{"parameters", OutputParameters(step)}};
  if (options_.s3 && !step.output_artifacts.empty()) {
    Json artifacts = Json::array();
    for (const auto& a : step.output_artifacts) {
      std::string path = a.path.rfind('/', 0) == 0 ? a.path : workdir + "/" + a.path;
      artifacts.push_back({{"name", a.name}, {"path", path}, {"s3", S3Location(step, a.name)}});
    }
    tmpl["outputs"]["artifacts"] = artifacts;
  }
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

void ReplaceAll(std::string& text, const std::string& from, const std::string& to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
    text.replace(pos, from.size(), to);
}

Json Compiler::ResourceTemplate(const StepSpec& step, const Operator* op, TaskBuild* b) {
  if (HasOutputs(step) && step.foreach)
    Fail(step.loc, "outputs of foreach " + step.type + " step '" + step.name +
                       "' cannot be compiled to Argo: a resource template reads no files; write "
                       "results under the workspace and read them in a later container step");
  // A template Argo cannot resolve renders as "" (RenderInTemplate reports
  // it); a secret env var is passed by reference (secretKeyRef).
  TaskBuilder builder(step);
  auto render = [&](const Template& t, const std::string&) -> Result<RenderedText> {
    auto r = RenderInTemplate(step, t, b);
    return RenderedText{r ? *r : ""};
  };
  (void)builder.RenderArgv(render);
  (void)builder.RenderEnv(render, [](const EnvVarSpec&) -> Result<std::string> { return std::string(); });
  std::vector<std::pair<std::string, std::string>> typed;  // marker -> Argo expression
  if (op->RendersConfig()) builder.ReplaceConfig(RenderConfigInTemplate(step, step.config, b, &typed));
  Task task = std::move(builder).Build("argo", spec_.name, step.name, /*attempt=*/1);
  task.image = step.image.empty() ? options_.default_image : step.image;
  task.workdir = ResourceWorkdir(step);
  KubernetesObjectOptions mo;
  mo.namespace_ = options_.namespace_;
  mo.workspace_pvc = options_.workspace_pvc;
  mo.workspace_mount_path = options_.workspace_mount;
  mo.service_account = options_.service_account;
  auto manifest = op->KubernetesObject(task, mo);
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
  // Argo reads success/failureCondition as label selectors over status
  // paths; the operator says which.
  const Operator::ArgoConditions conditions = op->ArgoResourceConditions(*manifest);
  if (!conditions.unsupported.empty()) {
    Fail(step.loc, step.type + " step '" + step.name + "' cannot be compiled to Argo: " + conditions.unsupported);
    return Json::object();
  }
  const std::string& success = conditions.success;
  const std::string& failure = conditions.failure;
  YAML::Emitter em;
  em << YAML::Load(manifest->dump());
  std::string text = std::string(em.c_str()) + "\n";
  for (const auto& [marker, expression] : typed) ReplaceAll(text, marker, expression);
  return {{"name", step.name},
          {"resource",
           {{"action", "create"},
            {"setOwnerReference", true},
            {"successCondition", success},
            {"failureCondition", failure},
            {"manifest", text}}}};
}

// --- deploy and traffic-validation steps ---

// An Argo resource successCondition for a Deployment rolled out at `n`
// replicas (a number, or an Argo reference). Argo reads conditions as label
// selectors over gjson paths, so a status condition inside a list (e.g.
// Progressing/ProgressDeadlineExceeded) cannot be selected: the template's
// activeDeadlineSeconds bounds the wait instead.
std::string RolledOut(const std::string& n) {
  if (n == "0") return "!status.availableReplicas";
  return "status.replicas == " + n + ", status.updatedReplicas == " + n +
         ", status.availableReplicas == " + n;
}

Json DeploymentRef(const std::string& name, const std::string& ns) {
  return {{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"metadata", {{"name", name}, {"namespace", ns}}}};
}

Json ServiceRef(const std::string& name, const std::string& ns) {
  return {{"apiVersion", "v1"}, {"kind", "Service"}, {"metadata", {{"name", name}, {"namespace", ns}}}};
}

// The model task of a deploy step: checks that the model artifact is on the
// workspace volume and publishes its digest, its path on the volume and its
// file name, which the Deployment's init container fetches and checks, as
// the Kubernetes executor's deploy does from the artifact store.
constexpr const char* kModelScript =
    "set -eu\n"
    "m=\"$1\"; root=\"$2\"\n"
    "case \"$m\" in \"$root\"/*) ;; *) echo \"sluice: model $m is not on the workspace volume ($root)\" >&2; exit 1;; esac\n"
    "[ -e \"$m\" ] || { echo \"sluice: model $m does not exist\" >&2; exit 1; }\n"
    "mkdir -p /tmp/sluice\n"
    "printf '%s' \"${m#\"$root\"/}\" > /tmp/sluice/path\n"
    "printf '%s' \"${m##*/}\" > /tmp/sluice/name\n"
    "if [ -f \"$m\" ]; then d=$(sha256sum \"$m\"); else d=$(cd \"$m\" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum); fi\n"
    "printf '%s' \"${d%% *}\" > /tmp/sluice/digest\n";

std::string Compiler::Token(const TokenValue& value) {
  for (const auto& [token, v] : tokens_)
    if (v.param == value.param && v.raw == value.raw && v.text == value.text) return token;
  std::string token = "sluicetok" + std::to_string(tokens_.size()) + "z";
  tokens_[token] = value;
  return token;
}

std::string Compiler::Detokenize(std::string text, const std::string& prefix, bool manifest) const {
  // Longest tokens first: sluicetok1z is no prefix of sluicetok11z, but keep
  // the order independent of that anyway.
  for (auto it = tokens_.rbegin(); it != tokens_.rend(); ++it) {
    const auto& [token, v] = *it;
    std::string to = v.param ? "{{inputs.parameters." + prefix + v.text + "}}" : v.text;
    if (v.raw) {
      ReplaceAll(text, "\"" + token + "\"",
                 manifest && v.param ? "{{=asInt(inputs.parameters['" + prefix + v.text + "'])}}" : to);
    }
    ReplaceAll(text, token, to);
  }
  return text;
}

std::optional<Json> Compiler::TokenizeConfig(const StepSpec& step, const Json& config, TaskBuild* b) {
  if (config.is_object() || config.is_array()) {
    Json out = config;
    for (auto it = out.begin(); it != out.end(); ++it) {
      auto v = TokenizeConfig(step, *it, b);
      if (!v) return std::nullopt;
      *it = std::move(*v);
    }
    return out;
  }
  if (!config.is_string()) return config;
  const std::string& text = config.get_ref<const std::string&>();
  if (text.find("{{") == std::string::npos) return config;
  auto segments = Segments(text);
  // One {{ params.x }} of a number or bool keeps its type, as the runner
  // renders it.
  bool raw = false;
  if (segments.size() == 1 && segments[0].expression) {
    auto refs = expr::References(segments[0].text, /*is_template=*/false);
    if (refs && refs->size() == 1 && refs->front().path.size() == 2 && refs->front().path[0] == "params") {
      const ParamSpec* p = spec_.FindParam(refs->front().path[1]);
      raw = p != nullptr && (p->type == ParamType::kInt || p->type == ParamType::kNumber ||
                             p->type == ParamType::kBool);
    }
  }
  std::string out;
  for (const Segment& seg : segments) {
    if (!seg.expression) {
      out += seg.text;
      continue;
    }
    auto r = RenderInTemplate(step, Template{"{{ " + seg.text + " }}", step.loc}, b);
    if (!r) return std::nullopt;
    const std::string prefix = "{{inputs.parameters.";
    if (r->rfind(prefix, 0) == 0) {
      out += Token({true, raw, r->substr(prefix.size(), r->size() - prefix.size() - 2)});
    } else if (r->find("{{") != std::string::npos) {
      out += Token({false, false, *r});  // an Argo global such as {{workflow.name}}
    } else {
      out += *r;  // known at compile time
    }
  }
  return Json(out);
}

std::string Compiler::ServingNamespaceToken() {
  if (!options_.namespace_.empty()) return options_.namespace_;
  if (!spec_.namespace_.empty()) return spec_.namespace_;
  return Token({false, false, "{{workflow.namespace}}"});
}

Json Compiler::PartMetadata(const StepSpec& step, const std::string& part) const {
  return {{"annotations", {{"sluice.dev/pipeline", spec_.name},
                           {"sluice.dev/part-of", step.name},
                           {"sluice.dev/part", part}}}};
}

Json Compiler::ObjectTemplate(const std::string& name, const std::string& action, const Json& object,
                              const std::string& prefix, const std::string& success,
                              std::optional<Duration> deadline) {
  YAML::Emitter em;
  EmitJson(em, object, /*quote_templates=*/true);
  Json resource = {{"action", action}, {"manifest", Detokenize(em.c_str(), prefix, /*manifest=*/true) + "\n"}};
  if (action == "patch") resource["mergeStrategy"] = "merge";
  if (!success.empty()) resource["successCondition"] = Detokenize(success, prefix);
  Json tmpl = {{"name", name}, {"resource", resource}};
  if (deadline) tmpl["activeDeadlineSeconds"] = CeilSeconds(*deadline);
  return tmpl;
}

void Compiler::AddSubTask(Json* tasks, Json tmpl, const std::string& task, const std::string& depends,
                          const std::function<std::string(const std::string&)>& value,
                          const std::string& when, bool continue_on_failed) {
  static const std::regex kInput(R"(\{\{inputs\.parameters\.([-A-Za-z0-9_]+)\}\})");
  std::string text = tmpl.dump();
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kInput); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1].str());
  Json t = {{"name", task}, {"template", tmpl["name"]}};
  if (!depends.empty()) t["depends"] = depends;
  if (!when.empty()) t["when"] = when;
  if (continue_on_failed) t["continueOn"] = {{"failed", true}};
  if (!names.empty()) {
    Json inputs = Json::array(), args = Json::array();
    for (const auto& n : names) {
      inputs.push_back({{"name", n}});
      args.push_back({{"name", n}, {"value", value(n)}});
    }
    tmpl["inputs"] = {{"parameters", inputs}};
    t["arguments"] = {{"parameters", args}};
  }
  templates_.push_back(tmpl);
  tasks->push_back(t);
}

// A deploy step is a DAG:
//   model          container: the model's digest, path and name (kModelScript)
//   probe          a DAG getting Deployment <service>-stable (canary mode):
//                  its replicas, or "" when there is none
//   canary mode, a stable Deployment found (when: replicas != ""):
//     canary         apply Deployment <service>-canary, annotated with the
//                    stable replicas before; wait for its rollout
//     scale-stable   merge-patch <service>-stable to the rest of the replicas
//     service-canary apply Service <service>-canary
//     undo-*         when one of those fails: the stable Deployment back to
//                    its replicas, the canary deleted (as the executor puts
//                    its objects back)
//   replace mode, or no stable Deployment (when: replicas == "": deployed as
//   stable at 100%, as sluice does):
//     stable         apply Deployment <service>-stable; wait for its rollout
//   service        apply Service <service> (after either branch)
// The objects are the serving operator's own (ServingObjects::build).
Json Compiler::DeployTemplate(const StepSpec& step, TaskBuild* b) {
  Json dag = {{"name", step.name}};
  auto reject = [&](const std::string& why) {
    Fail(step.loc, "deploy step '" + step.name + "' cannot be compiled to Argo: " + why);
    return dag;
  };
  if (!options_.serving.available())
    return reject("this sluice was built without the serving operator's manifests");
  if (step.foreach) return reject("foreach: a deploy step deploys one service; use one step per service");
  if (!step.config.is_object()) return reject("the deploy: section must be a map");
  Json config = step.config;
  const std::string prefix = "{{inputs.parameters.";
  // The model artifact: its path on the workspace volume, checked and
  // digested by the model task.
  if (!config.contains("model") || !config["model"].is_string())
    return reject("deploy.model: required: the model artifact, e.g. model: \"{{ steps.select.outputs.artifacts.best_model }}\"");
  auto m = RenderInTemplate(step, Template{config["model"].get<std::string>(), step.loc}, b);
  if (!m) return dag;
  const std::string model_arg = *m;
  auto tokenized = TokenizeConfig(step, config, b);
  if (!tokenized) return dag;
  config = *tokenized;
  config["executor"] = "kubernetes";
  Json& k = config["kubernetes"];
  if (!k.is_object()) k = Json::object();
  if (k.value("kserve", false))
    return reject("kubernetes.kserve: an InferenceService is ready when its Ready status condition is "
                  "True, which Argo's successCondition (a label selector over status paths) cannot "
                  "select; deploy KServe with `sluice run --executor kubernetes`");
  if (k.contains("artifacts_pvc") && k["artifacts_pvc"] != options_.workspace_pvc)
    return reject("kubernetes.artifacts_pvc: under Argo the model artifact is a file on the workspace "
                  "volume (--workspace-pvc " + options_.workspace_pvc + "), not in sluice's artifact store");
  if (k.contains("model_path")) return reject("kubernetes.model_path: under Argo the model is the artifact the step names in model:");
  const std::string ns = ServingNamespaceToken();
  if (!k.contains("namespace")) k["namespace"] = ns;
  k["artifacts_pvc"] = options_.workspace_pvc;
  k["model_path"] = Token({true, false, "model-path"});
  config["model"] = Token({true, false, "model-name"});
  config["model_digest"] = "sha256:" + Token({true, false, "model-digest"});
  if (!config.contains("version")) config["version"] = Token({false, false, "{{workflow.name}}"});
  config["run"] = {{"id", Token({false, false, "{{workflow.name}}"})}, {"instance", step.name}};
  Json& serve = config["serve"];
  if (!serve.is_object()) serve = Json::object();
  if (!serve.contains("image")) {
    std::string image = step.image.empty() ? options_.default_image : step.image;
    if (!image.empty()) serve["image"] = image;
  }
  if (model_arg.find("{{") == std::string::npos &&
      model_arg.rfind(options_.workspace_mount + "/", 0) != 0)
    return reject("model: '" + model_arg + "' is not on the workspace volume (" + options_.workspace_mount +
                  "); name a step's output artifact, e.g. \"{{ steps.train.outputs.artifacts.model }}\"");
  auto objects = options_.serving.build(config);
  if (!objects) return reject(objects.error().message());
  Json replace_config = config;
  replace_config["mode"] = "replace";
  auto replace_objects = options_.serving.build(replace_config);
  if (!replace_objects) return reject(replace_objects.error().message());

  Duration readiness = std::chrono::seconds(60);
  if (config.contains("readiness") && config["readiness"].is_object() && config["readiness"].contains("timeout")) {
    const Json& t = config["readiness"]["timeout"];
    if (t.is_number()) readiness = std::chrono::milliseconds(static_cast<int64_t>(t.get<double>() * 1000));
    else if (t.is_string())
      if (auto d = ParseDuration(t.get<std::string>())) readiness = *d;
  }
  const std::string fetch_image = k.value("fetch_image", "busybox:1.36");
  DeployPlan plan;
  plan.step = step.name;
  plan.service = step.config.value("service", Json());
  plan.canary = step.config.value("mode", "replace") == "canary";
  plan.total = k.value("replicas", 2);
  plan.traffic = step.config.value("traffic", 10.0);
  plan.fetch_image = fetch_image;

  Json tasks = Json::array();
  auto value = [&](const std::string& n) -> std::string {
    if (n.rfind("model-", 0) == 0) return "{{tasks.model.outputs.parameters." + n.substr(6) + "}}";
    if (n == "stable-before") return "{{tasks.probe.outputs.parameters.replicas}}";
    return prefix + n + "}}";
  };
  // model
  Json model = {{"name", step.name + "-model"},
                {"metadata", PartMetadata(step, "model")},
                {"container",
                 {{"image", fetch_image},
                  {"command", Json::array({"/bin/sh", "-c", kModelScript})},
                  {"args", Json::array({"sluice-model", model_arg, options_.workspace_mount})},
                  {"volumeMounts", Json::array({{{"name", "workspace"}, {"mountPath", options_.workspace_mount}}})}}},
                {"outputs",
                 {{"parameters",
                   Json::array({{{"name", "digest"}, {"valueFrom", {{"path", "/tmp/sluice/digest"}}}},
                                {{"name", "path"}, {"valueFrom", {{"path", "/tmp/sluice/path"}}}},
                                {{"name", "name"}, {"valueFrom", {{"path", "/tmp/sluice/name"}}}}})}}}};
  if (step.timeout) model["activeDeadlineSeconds"] = CeilSeconds(*step.timeout);
  AddSubTask(&tasks, model, "model", "", value);

  auto object_named = [](const Json& list, const std::string& kind, const std::string& suffix) -> Json {
    for (const auto& o : list["items"]) {
      std::string name = o["metadata"]["name"];
      if (o["kind"] == kind && name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return o;
    }
    return Json();
  };
  auto add = [&](const std::string& part, const std::string& action, Json object, const std::string& success,
                 std::optional<Duration> deadline, const std::string& depends, const std::string& when = "") {
    Json t = ObjectTemplate(step.name + "-" + part, action, object, "", success, deadline);
    t["metadata"] = PartMetadata(step, part);
    AddSubTask(&tasks, t, part, depends, value, when);
  };
  const Json stable = object_named(*replace_objects, "Deployment", "-stable");
  const Json service = object_named(*replace_objects, "Service", "");
  std::string replace_depends = "model.Succeeded";
  std::string service_depends = "stable.Succeeded";
  std::string replace_when;
  if (plan.canary) {
    Json canary = object_named(*objects, "Deployment", "-canary");
    Json stable_patch = object_named(*objects, "Deployment", "-stable");
    Json canary_service = object_named(*objects, "Service", "-canary");
    if (canary.is_null() || stable_patch.is_null() || canary_service.is_null())
      return reject("the serving operator gave no canary Deployment and Service");
    canary["metadata"]["annotations"]["sluice.dev/stable-replicas-before"] = Token({true, false, "stable-before"});
    stable_patch["metadata"].erase("annotations");
    std::string stable_name = stable_patch["metadata"]["name"];
    // The probe: a `get` of the stable Deployment fails when there is none.
    // It runs in a DAG of its own with continueOn (Argo allows continueOn
    // only in a DAG without `depends`), so that failure is an answer, not a
    // failed branch: the probe's output is its replicas, or "".
    Json get = ObjectTemplate(step.name + "-probe-get", "get", DeploymentRef(stable_name, ns), "", "", std::nullopt);
    get["metadata"] = PartMetadata(step, "probe-get");
    get["outputs"] = {{"parameters", Json::array({{{"name", "replicas"},
                                                   {"valueFrom", {{"jsonPath", "{.spec.replicas}"}}}}})}};
    Json probe_tasks = Json::array();
    auto own = [&](const std::string& n) { return prefix + n + "}}"; };
    AddSubTask(&probe_tasks, get, "get", "", own, "", /*continue_on_failed=*/true);
    Json probe = {{"name", step.name + "-probe"},
                  {"metadata", PartMetadata(step, "probe")},
                  {"dag", {{"tasks", probe_tasks}}},
                  {"outputs", {{"parameters", Json::array({{{"name", "replicas"},
                                                            {"valueFrom", {{"parameter", "{{tasks.get.outputs.parameters.replicas}}"},
                                                                           {"default", ""}}}}})}}}};
    AddSubTask(&tasks, probe, "probe", "", value);
    const std::string found = "'{{tasks.probe.outputs.parameters.replicas}}' != ''";
    add("canary", "apply", canary, RolledOut(std::to_string(canary["spec"].value("replicas", 1))), readiness,
        "model.Succeeded && probe.Succeeded", found);
    add("scale-stable", "patch", stable_patch, RolledOut(std::to_string(stable_patch["spec"].value("replicas", 1))),
        readiness, "canary.Succeeded");
    add("service-canary", "apply", canary_service, "", std::nullopt, "scale-stable.Succeeded");
    // A failed canary rollout is put back, as the executor does: the
    // stable Deployment at its replicas before, the canary deleted. The
    // step still fails: `service` never runs.
    const std::string failed = "canary.Failed || scale-stable.Failed || service-canary.Failed";
    Json scale_back = DeploymentRef(stable_name, ns);
    scale_back["spec"] = {{"replicas", Token({true, true, "stable-before"})}};
    add("undo-stable", "patch", scale_back, "", std::nullopt, failed);
    add("undo-canary", "delete", DeploymentRef(canary["metadata"]["name"], ns), "", std::nullopt,
        "undo-stable.Succeeded || undo-stable.Failed");
    add("undo-service-canary", "delete", ServiceRef(canary_service["metadata"]["name"], ns), "", std::nullopt,
        "undo-canary.Succeeded || undo-canary.Failed");
    replace_depends = "model.Succeeded && probe.Succeeded";
    replace_when = "'{{tasks.probe.outputs.parameters.replicas}}' == ''";
    service_depends = "service-canary.Succeeded || stable.Succeeded";
    plan.canary_deployment = canary;
  }
  if (stable.is_null() || service.is_null()) return reject("the serving operator gave no Deployment and Service");
  add("stable", "apply", stable, RolledOut(std::to_string(stable["spec"].value("replicas", 1))), readiness,
      replace_depends, replace_when);
  add("service", "apply", service, "", std::nullopt, service_depends);

  // What a validation step reads of this deploy: the model and the stable
  // replicas before the canary ("" when there was no stable Deployment).
  Json outputs = Json::array();
  for (const char* n : {"digest", "path", "name"})
    outputs.push_back({{"name", std::string("sluice-model-") + n},
                       {"valueFrom", {{"parameter", "{{tasks.model.outputs.parameters." + std::string(n) + "}}"}}}});
  if (plan.canary)
    outputs.push_back({{"name", "sluice-stable-replicas-before"},
                       {"valueFrom", {{"parameter", "{{tasks.probe.outputs.parameters.replicas}}"}}}});
  dag["dag"] = {{"tasks", tasks}};
  dag["outputs"] = {{"parameters", outputs}};
  plan.args = b->args;
  deploy_plans_[step.name] = plan;
  return dag;
}

// A traffic-validation step of a service deployed by a canary deploy step
// of the same pipeline is the staged rollout as a DAG:
//   shift-N        merge-patch <service>-canary / -stable to stage N's
//                  replicas (CanaryReplicasAt), wait for both rollouts
//   validate-N     container: `sluice-serving validate` measuring the canary's
//                  Service and judging the thresholds; exit 1 fails the stage
//   promote        the canary's pod template onto <service>-stable at the
//                  total (PromotePatch), wait; then the canary's Deployment
//                  and Service are deleted
//   rollback-*     when a stage fails: <service>-stable back to its replicas
//                  before the canary, the canary deleted; `rolled-back` then
//                  fails the step, as sluice's exit 1
// When the deploy found no stable Deployment (the service's first deploy,
// served at 100%), `validate` checks the service as it stands: no rollout.
Json Compiler::ValidationTemplate(const StepSpec& step, const PipelineGraph& graph, int node, TaskBuild* b) {
  Json dag = {{"name", step.name}};
  auto reject = [&](const std::string& why) {
    Fail(step.loc, "traffic-validation step '" + step.name + "' cannot be compiled to Argo: " + why);
    return dag;
  };
  if (!options_.serving.available())
    return reject("this sluice was built without the serving operator's manifests");
  if (options_.sluice_image.empty())
    return reject("its checks run `sluice-serving validate` in a pod: name an image that has "
                  "sluice-serving on its PATH with --sluice-image IMAGE");
  if (step.foreach) return reject("foreach: a validation rolls out one service; use one step per service");
  if (!step.config.is_object()) return reject("the validation: section must be a map");
  const Json& section = step.config;
  auto tokenized = TokenizeConfig(step, section, b);
  if (!tokenized) return dag;
  Json config = *tokenized;
  const std::string ns = ServingNamespaceToken();
  const std::string metrics_file = section.value("metrics", "metrics.json");
  Json metrics_output = Json::array({{{"name", "sluice-metrics"}, {"valueFrom", {{"path", "/tmp/" + metrics_file}}}}});
  Json run = {{"id", Token({false, false, "{{workflow.name}}"})}, {"instance", step.name}};
  // One `sluice-serving validate` of a bare endpoint: measure and judge.
  auto check = [&](const std::string& part, Json c) {
    for (const char* key : {"service", "executor", "kubernetes", "stages", "promote", "rollback"}) c.erase(key);
    c["run"] = run;
    Json tmpl = {{"name", step.name + "-" + part},
                 {"metadata", PartMetadata(step, part)},
                 {"container",
                  {{"image", options_.sluice_image},
                   {"command", Json::array({"sluice-serving", "validate", "--config", Detokenize(c.dump(), ""),
                                            "--out", "/tmp"})},
                   {"env", Json::array({{{"name", "SLUICE_STATE_DIR"}, {"value", "/tmp"}}})},
                   // The request set is an artifact on the workspace volume.
                   {"volumeMounts", Json::array({{{"name", "workspace"}, {"mountPath", options_.workspace_mount}}})}}},
                 {"outputs", {{"parameters", metrics_output}}}};
    if (step.timeout) tmpl["activeDeadlineSeconds"] = CeilSeconds(*step.timeout);
    return tmpl;
  };
  Json tasks = Json::array();
  auto own = [](const std::string& n) { return "{{inputs.parameters." + n + "}}"; };
  if (!section.contains("service")) {
    // A bare endpoint: validate only, as sluice does.
    AddSubTask(&tasks, check("check", config), "check", "", own);
    dag["dag"] = {{"tasks", tasks}};
    return dag;
  }
  // The deploy step of this service, upstream of this step.
  const DeployPlan* plan = nullptr;
  for (int up : graph.UpstreamClosure({node})) {
    auto it = deploy_plans_.find(graph.step(up).name);
    if (up != node && it != deploy_plans_.end() && it->second.service == section["service"]) plan = &it->second;
  }
  if (plan == nullptr)
    return reject("no deploy step upstream of it deploys service " + section["service"].dump() +
                  ": the rollout's replica counts and its promote come from that step's deploy config; "
                  "deploy the service earlier in the same pipeline, with depends");
  if (section.value("shadow", false) && !section.contains("baseline_endpoint"))
    return reject("shadow: on Kubernetes it needs baseline_endpoint, where the stable model answers "
                  "(as `sluice run --executor kubernetes` does)");
  const std::string service = config["service"].get<std::string>();
  const std::string stable_name = service + "-stable", canary_name = service + "-canary";
  Duration rollout = std::chrono::minutes(5);
  if (section.contains("kubernetes") && section["kubernetes"].is_object() &&
      section["kubernetes"].contains("rollout_timeout") && section["kubernetes"]["rollout_timeout"].is_string())
    if (auto d = ParseDuration(section["kubernetes"]["rollout_timeout"].get<std::string>())) rollout = *d;

  // Values from the deploy step: its own arguments (renamed deploy-aN), its
  // model outputs and the stable replicas before the canary.
  auto value = [&](const std::string& n) -> std::string {
    if (n.rfind("deploy-", 0) == 0 || n == "stable-before") {
      std::string outer;
      if (n == "stable-before") outer = "{{tasks." + plan->step + ".outputs.parameters.sluice-stable-replicas-before}}";
      else if (n.rfind("deploy-model-", 0) == 0)
        outer = "{{tasks." + plan->step + ".outputs.parameters.sluice-model-" + n.substr(13) + "}}";
      else
        for (const auto& a : plan->args)
          if ("deploy-" + a["name"].get<std::string>() == n) outer = a["value"];
      bool known = false;
      for (const auto& in : b->inputs) known |= in["name"] == n;
      if (!known) {
        b->inputs.push_back({{"name", n}});
        b->args.push_back({{"name", n}, {"value", outer}});
      }
    }
    return own(n);
  };
  const std::string before = value("stable-before");
  // The service's first deploy (no stable Deployment before): as it stands.
  Json as_is = config;
  as_is["endpoint"] = "http://" + service + "." + ns + ".svc.cluster.local";
  as_is.erase("shadow");
  as_is.erase("baseline_endpoint");
  if (as_is.contains("thresholds") && as_is["thresholds"].is_object()) as_is["thresholds"].erase("max_regression_vs_baseline");
  if (!plan->canary) {
    AddSubTask(&tasks, check("check", as_is), "check", "", value);
    dag["dag"] = {{"tasks", tasks}};
    return dag;
  }
  AddSubTask(&tasks, check("check", as_is), "check", "", value, "'" + before + "' == ''");

  std::vector<double> stages;
  if (section.contains("stages")) {
    if (!section["stages"].is_array()) return reject("stages: a list of shares in percent");
    for (const auto& s : section["stages"]) {
      if (!s.is_number()) return reject("stages: " + s.dump() + " is not a literal number; the replica counts of each stage are fixed at compile time");
      stages.push_back(s.get<double>());
    }
  }
  if (stages.empty()) stages.push_back(plan->traffic);
  Json stage_config = config;
  if (!stage_config.contains("endpoint")) stage_config["endpoint"] = "http://" + canary_name + "." + ns + ".svc.cluster.local";
  std::string previous, failed;
  auto add = [&](const std::string& part, const std::string& action, const Json& object, const std::string& success,
                 const std::string& depends, const std::string& when = "") {
    Json t = ObjectTemplate(step.name + "-" + part, action, object, "", success, rollout);
    t["metadata"] = PartMetadata(step, part);
    AddSubTask(&tasks, t, part, depends, value, when);
  };
  int64_t current = std::max<int64_t>(1, options_.serving.canary_replicas(plan->total, plan->traffic));
  for (size_t i = 0; i < stages.size(); ++i) {
    std::string n = std::to_string(i + 1);
    int64_t canary = options_.serving.canary_replicas(plan->total, stages[i]);
    std::string when = previous.empty() ? "'" + before + "' != ''" : "";
    if (canary != current || previous.empty()) {
      // Canary first, then the stable Deployment (capacity before removal
      // when growing the canary, as sluice's Shift does).
      Json c = DeploymentRef(canary_name, ns);
      c["spec"] = {{"replicas", canary}};
      add("shift-" + n + "-canary", "patch", c, RolledOut(std::to_string(canary)), previous, when);
      Json s = DeploymentRef(stable_name, ns);
      s["spec"] = {{"replicas", plan->total - canary}};
      add("shift-" + n + "-stable", "patch", s, RolledOut(std::to_string(plan->total - canary)),
          "shift-" + n + "-canary.Succeeded");
      previous = "shift-" + n + "-stable.Succeeded";
      when.clear();
      current = canary;
    }
    Json c = stage_config;
    c["stages"] = Json::array({stages[i]});
    AddSubTask(&tasks, check("validate-" + n, c), "validate-" + n, previous, value, when);
    previous = "validate-" + n + ".Succeeded";
    failed += (failed.empty() ? "" : " || ") + std::string("validate-") + n + ".Failed";
  }
  if (section.value("promote", true)) {
    // The canary Deployment as the deploy step built it, with its values.
    Json canary = plan->canary_deployment;
    std::string canary_text = Detokenize(canary.dump(), "deploy-");
    Json patch = options_.serving.promote_patch(Json::parse(canary_text), plan->total);
    Json target = DeploymentRef(stable_name, ns);
    target["metadata"]["labels"] = patch["metadata"]["labels"];
    target["metadata"]["annotations"] = patch["metadata"]["annotations"];
    target["spec"] = patch["spec"];
    add("promote", "patch", target, RolledOut(std::to_string(plan->total)), previous);
    add("promote-delete-canary", "delete", DeploymentRef(canary_name, ns), "", "promote.Succeeded");
    add("promote-delete-service", "delete", ServiceRef(canary_name, ns), "", "promote-delete-canary.Succeeded");
  }
  if (section.value("rollback", true)) {
    Json s = DeploymentRef(stable_name, ns);
    s["spec"] = {{"replicas", Token({true, true, "stable-before"})}};
    add("rollback", "patch", s, RolledOut(before), failed);
    add("rollback-delete-canary", "delete", DeploymentRef(canary_name, ns), "", "rollback.Succeeded");
    add("rollback-delete-service", "delete", ServiceRef(canary_name, ns), "", "rollback-delete-canary.Succeeded");
    Json fail = {{"name", step.name + "-rolled-back"},
                 {"metadata", PartMetadata(step, "rolled-back")},
                 {"container",
                  {{"image", plan->fetch_image},
                   {"command", Json::array({"/bin/sh", "-c",
                                            "echo \"sluice: traffic validation of service $1 failed; rolled back: "
                                            "the stable Deployment serves at its replicas before the canary, the "
                                            "canary was deleted\" >&2; exit 1",
                                            "sluice-rolled-back", service})}}}};
    fail["container"]["command"][4] = Detokenize(service, "");
    AddSubTask(&tasks, fail, "rolled-back", "rollback-delete-service.Succeeded", value);
  }
  dag["dag"] = {{"tasks", tasks}};
  return dag;
}

// Argo's retryStrategy for `retries` (limit > 0).
Json RetryStrategy(const RetryPolicy& retries) {
  Json rs = {{"limit", std::to_string(retries.limit)},
             {"retryPolicy", retries.retry_on == RetryOn::kAlways      ? "Always"
                             : retries.retry_on == RetryOn::kOnFailure ? "OnFailure"
                                                                       : "OnError"}};
  if (retries.backoff.count() > 0) {
    std::ostringstream factor;
    factor << retries.factor;
    rs["backoff"] = {{"duration", DurationString(retries.backoff)}, {"factor", factor.str()}};
    if (retries.max_backoff) rs["backoff"]["cap"] = DurationString(*retries.max_backoff);
  }
  return rs;
}

void Compiler::AddStep(const StepSpec& step, const PipelineGraph& graph, int node, Json* tasks) {
  // A step runs as an Argo container template when its operator's object is
  // a Job, as the operator's program in the sluice image (deploy,
  // traffic-validation), or as a resource template over the operator's
  // object.
  const Operator* op = OperatorRegistry::OrGlobal(options_.operators).Find(step.type);
  const bool serving = op && op->RunsOperatorProgram();
  const bool container = op && !serving && op->Kind() && op->Kind()->kind == "Job";
  if (!op || (serving && step.type != "deploy" && step.type != "traffic-validation") || (!serving && !op->Kind())) {
    Fail(step.loc, "step '" + step.name + "' of type " + step.type + " cannot be compiled to Argo");
    return;
  }
  if (step.priority != 0)
    Fail(step.loc, "step '" + step.name + "': priority orders sluice's ready queue and has no "
                       "Argo equivalent; use kubernetes.priorityClassName for pod priority");
  if (options_.s3 && !container) {
    // Their pods (or the serving operator's) work on the workspace volume.
    Fail(step.loc, "step '" + step.name + "' of type " + step.type + " cannot be compiled with S3 artifacts: "
                       "only container steps pass artifacts through S3 under Argo; compile without --artifacts "
                       "(the workspace volume) or --exclude-step " + step.name);
    return;
  }
  TaskBuild b;
  Json tmpl = container                          ? ContainerTemplate(step, &b)
              : step.type == "deploy"             ? DeployTemplate(step, &b)
              : step.type == "traffic-validation" ? ValidationTemplate(step, graph, node, &b)
                                                  : ResourceTemplate(step, op, &b);
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
  if (container) {
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
  // A deploy / validation step's DAG: its pods and resource templates carry
  // the deadlines (Argo enforces activeDeadlineSeconds on pods only).
  if (step.timeout && !serving) tmpl["activeDeadlineSeconds"] = CeilSeconds(*step.timeout);
  if (step.retries.limit > 0) tmpl["retryStrategy"] = RetryStrategy(step.retries);

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

  // An input artifact's path says nothing of its content: no memoization.
  if (step.cache.enabled && !ReadsAnArtifact(step) && container && b.input_artifacts.empty()) {
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
  if (!b.input_artifacts.empty()) tmpl["inputs"]["artifacts"] = b.input_artifacts;
  if (!container && !serving && HasOutputs(step) && !step.foreach) {
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
    if (!b.arg_artifacts.empty()) task["arguments"]["artifacts"] = b.arg_artifacts;
    if (!loop_key.empty()) task[loop_key] = loop;
    tasks->push_back(task);
    return;
  }
  AddFanOutTask(step, std::move(task), b, loop_key, std::move(loop), tmpl, tasks);
}

void Compiler::AddFanOutTask(const StepSpec& step, Json task, const TaskBuild& b, const std::string& loop_key,
                             Json loop, const Json& tmpl, Json* tasks) {
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
  // Input artifacts pass through the wrapper's own inputs.
  Json inner_artifacts = Json::array();
  for (const auto& a : b.arg_artifacts) {
    const std::string n = a["name"];
    inner_artifacts.push_back({{"name", n}, {"from", "{{inputs.artifacts." + n + "}}"}});
  }
  if (!inner_artifacts.empty()) inner["arguments"]["artifacts"] = inner_artifacts;
  inner[loop_key] = loop;
  Json wrapper = {{"name", step.name + "-fanout"},
                  {"parallelism", step.foreach->parallelism},
                  {"dag", {{"tasks", Json::array({inner})}}}};
  if (!wrapper_inputs.empty()) wrapper["inputs"] = {{"parameters", wrapper_inputs}};
  if (!b.arg_artifacts.empty()) {
    Json names = Json::array();
    for (const auto& a : b.arg_artifacts) names.push_back({{"name", a["name"]}});
    wrapper["inputs"]["artifacts"] = names;
  }
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
  if (!b.arg_artifacts.empty()) task["arguments"]["artifacts"] = b.arg_artifacts;
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
  // With S3 artifacts each pod gets an empty working directory of its own.
  spec["volumes"] = options_.s3 ? Json::array({{{"name", "workspace"}, {"emptyDir", Json::object()}}})
                                : Json::array({{{"name", "workspace"},
                                                {"persistentVolumeClaim", {{"claimName", options_.workspace_pvc}}}}});
  // A deploy or validation step's parts are templates named <step>-<part>;
  // a step of that name would make two templates with one name.
  std::set<std::string> names;
  for (const auto& t : templates_) {
    const std::string name = t.value("name", "");
    if (!names.insert(name).second)
      Fail({spec_.file, 0, 0}, "two Argo templates would be named '" + name + "' (a step of that name, and a "
                               "part of a deploy or traffic-validation step, or a step's -fanout/-job/-outputs "
                               "template): rename the step");
  }
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
                 {"sluice.dev/pipeline", k8s::LabelValue(spec_.name)}};
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

void EmitJson(YAML::Emitter& em, const Json& j, bool quote_templates) {
  if (j.is_object()) {
    em << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      em << YAML::Key << it.key() << YAML::Value;
      EmitJson(em, it.value(), quote_templates);
    }
    em << YAML::EndMap;
  } else if (j.is_array()) {
    em << YAML::BeginSeq;
    for (const auto& v : j) EmitJson(em, v, quote_templates);
    em << YAML::EndSeq;
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.find('\n') != std::string::npos) em << YAML::Literal << s;
    else if (NeedsQuotes(s) || (quote_templates && (s.find("{{") != std::string::npos ||
                                                    s.find("sluicetok") != std::string::npos)))
      em << YAML::DoubleQuoted << s;
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

namespace {

// The spec with the steps of sub-pipelines ("eval/score") renamed for Argo,
// whose task and template names cannot hold '/': "eval--score", in their
// names, `depends` and `steps.` references. A sub-pipeline run with
// foreach, and minSuccessRatio, have no Argo form: they are `errors`.
PipelineSpec ArgoStepNames(const PipelineSpec& spec, std::vector<CompileError>* errors) {
  std::vector<std::pair<std::string, std::string>> renamed;  // longest names first
  for (const auto& s : spec.steps)
    if (s.name.find('/') != std::string::npos) {
      std::string to = s.name;
      for (size_t at = to.find('/'); at != std::string::npos; at = to.find('/', at + 2)) to.replace(at, 1, "--");
      renamed.push_back({s.name, to});
    }
  std::sort(renamed.begin(), renamed.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  auto rename_refs = [&](Template& t) {
    for (const auto& [from, to] : renamed) {
      const std::string old_ref = "steps." + from + ".";
      for (size_t at = t.text.find(old_ref); at != std::string::npos; at = t.text.find(old_ref, at + to.size()))
        t.text.replace(at, old_ref.size(), "steps." + to + ".");
    }
  };
  PipelineSpec out = spec;
  for (auto* list : {&out.steps, &out.finally_steps}) {
    for (auto& s : *list) {
      if (!ForeachGroup(s).empty() || MinSuccessRatio(s))
        errors->push_back({s.foreach->loc, "step '" + s.name + "': " +
                                               (MinSuccessRatio(s) ? std::string("minSuccessRatio")
                                                                   : "a group of steps run with foreach (a sub-pipeline or "
                                                                     "a component graph)") +
                                               " has no Argo form; run it with `sluice run`"});
      for (const auto& [from, to] : renamed) {
        if (s.name == from) s.name = to;
        for (auto& d : s.depends)
          if (d == from) d = to;
      }
      if (renamed.empty()) continue;
      for (auto& t : s.command) rename_refs(t);
      for (auto& e : s.env) rename_refs(e.value);
      if (s.workdir) rename_refs(*s.workdir);
      for (auto& [name, t] : s.inputs) rename_refs(t);
      if (s.when) rename_refs(*s.when);
      if (s.foreach) rename_refs(s.foreach->expression);
    }
  }
  return out;
}

}  // namespace

ArgoOutput CompileToArgo(const PipelineSpec& spec, const std::string& pipeline_dir,
                         const ArgoOptions& options) {
  std::vector<CompileError> errors;
  const PipelineSpec renamed = ArgoStepNames(spec, &errors);
  Compiler compiler(renamed, pipeline_dir, options);
  ArgoOutput out = compiler.Run();
  out.errors.insert(out.errors.end(), errors.begin(), errors.end());
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
