#include "dsl/dsl.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <openssl/evp.h>

#include "dsl/limits.h"
#include "dsl/names.h"
#include "dsl/quantity.h"
#include "dsl/suggest.h"
#include "dsl/yaml_cache.h"
#include "dsl/yaml_tree.h"
#include "engine/expr.h"
#include "engine/foreach_group.h"
#include "engine/git_source.h"
#include "engine/s3_url.h"
#include "engine/text.h"

namespace sluice::dsl {

// ---------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------

std::string Diagnostic::ToString() const {
  std::string out = loc.ToString();
  if (!out.empty()) out += ": ";
  out += severity == Severity::kError ? "error: " : "warning: ";
  out += message;
  return out;
}

size_t LoadResult::ErrorCount() const {
  return static_cast<size_t>(std::count_if(diagnostics.begin(), diagnostics.end(),
                                           [](const Diagnostic& d) { return d.severity == Severity::kError; }));
}

std::string FormatDiagnosticsText(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const auto& d : diagnostics) {
    out += d.ToString();
    out += '\n';
  }
  return out;
}

std::string FormatDiagnosticsJson(const std::vector<Diagnostic>& diagnostics) {
  Json arr = Json::array();
  for (const auto& d : diagnostics) {
    arr.push_back({{"file", d.loc.file},
                   {"line", d.loc.line},
                   {"column", d.loc.column},
                   {"severity", d.severity == Severity::kError ? "error" : "warning"},
                   {"message", d.message}});
  }
  // File names come from the command line and may be any bytes; replace
  // what is not UTF-8 rather than throw.
  return arr.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

// ---------------------------------------------------------------------------
// Templates of a step
// ---------------------------------------------------------------------------

void ForEachStepTemplate(const StepSpec& step, const std::function<void(const Template&, TemplateField)>& fn) {
  for (const auto& c : step.command) fn(c, TemplateField::kCommand);
  for (const auto& e : step.env)
    if (!e.secret) fn(e.value, TemplateField::kEnv);
  if (step.workdir) fn(*step.workdir, TemplateField::kWorkdir);
  for (const auto& [name, t] : step.inputs) fn(t, TemplateField::kInputs);
  if (step.when) fn(*step.when, TemplateField::kWhen);
  if (step.foreach && step.foreach->kind == ForEachSpec::Kind::kExpression)
    fn(step.foreach->expression, TemplateField::kForeach);
}

namespace {

// A `when` is a bare expression unless it contains {{ }}.
bool IsTemplateField(const Template& t, TemplateField field) {
  return field != TemplateField::kWhen || !t.IsLiteral();
}

// ForEachStepTemplate over a step that may be changed; `is_template` is
// false for a bare `when` expression.
void ForEachMutableTemplate(StepSpec& step, const std::function<void(Template&, bool)>& fn) {
  ForEachStepTemplate(step, [&](const Template& t, TemplateField field) {
    fn(const_cast<Template&>(t), IsTemplateField(t, field));
  });
}

}  // namespace

std::vector<std::string> StepDependencies(const StepSpec& step) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  for (const auto& d : step.depends)
    if (seen.insert(d).second) out.push_back(d);
  ForEachStepTemplate(step, [&](const Template& t, TemplateField field) {
    if (field != TemplateField::kWhen && t.IsLiteral()) return;
    auto refs = expr::References(t.text, IsTemplateField(t, field));
    if (!refs) return;
    for (const auto& r : *refs)
      if (r.path.size() >= 2 && r.path[0] == "steps" && r.path[1] != step.name && seen.insert(r.path[1]).second)
        out.push_back(r.path[1]);
  });
  return out;
}

namespace {

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

using Keys = std::vector<std::string>;

const Keys kTopKeys = {"apiVersion", "kind",      "metadata", "params", "defaults", "timeout",
                       "executor",   "namespace", "artifacts", "schedule", "steps", "finally", "outputs"};
// What a pipeline's `outputs:` declares (for use as a sub-pipeline).
const Keys kPipelineOutputKeys = {"artifacts", "params"};
// What a step that runs a sub-pipeline (`pipeline:`) may set.
// A component graph's using step sets the same, with `uses` for `pipeline`.
const Keys kSubPipelineStepKeys = {"name",    "pipeline",    "with",           "depends", "when",
                                   "foreach", "parallelism", "minSuccessRatio"};
// How deep sub-pipelines may nest (files, the top one included).
constexpr size_t kMaxSubPipelineDepth = 16;
const Keys kMetadataKeys = {"name", "description", "labels"};
const Keys kParamKeys = {"type", "default", "required", "description", "secret"};
// The keys of a step other than its operator section (those come from the
// operator registry) and `kubernetes`.
const Keys kStepBaseKeys = {"name",     "type",       "command",     "env",      "workdir",    "image",
                            "executor", "code",       "depends",     "inputs",   "when",       "ifUpstreamSkipped",
                            "foreach",  "parallelism", "retries",    "timeout",  "pendingTimeout", "resources",
                            "priority", "cache",      "outputs",     "uses",     "with",     "pipeline",
                            "minSuccessRatio"};
// A component file (`kind: Component`), its inputs, and its step body.
const Keys kComponentKeys = {"apiVersion", "kind", "metadata", "inputs", "outputs", "step", "steps"};
const Keys kComponentInputKeys = {"type", "default", "description"};
const Keys kComponentInputTypes = {"string", "int", "number", "bool", "list", "artifact"};
// What a component's step body may set (besides an operator section).
const Keys kComponentStepKeys = {"type",      "command",   "env",      "workdir", "image", "executor", "code",
                                 "retries",   "timeout",   "pendingTimeout", "resources", "priority", "cache",
                                 "kubernetes"};
// What a step that uses a component may set: where and when it runs, never
// what it runs.
const Keys kUsingStepKeys = {"name",     "uses",      "with",     "depends",  "when",     "ifUpstreamSkipped",
                             "foreach",  "parallelism", "retries", "timeout",  "pendingTimeout", "resources",
                             "priority", "cache",     "executor", "image",    "env",      "kubernetes",
                             "minSuccessRatio"};
const Keys kDefaultKeys = {"image", "timeout", "pendingTimeout", "retries",  "resources",
                           "executor", "cache", "env",          "priority", "kubernetes"};
// What a container step becomes on Kubernetes (kubernetes.object).
const Keys kKubernetesObjects = {"pod", "job"};
const Keys kKubernetesLogs = {"all", "failed"};
const Keys kRetryKeys = {"limit", "backoff", "factor", "maxBackoff", "retryOn"};
const Keys kResourceKeys = {"cpu", "memory", "gpu", "nodeSelector", "tolerations"};
const Keys kCacheKeys = {"enabled", "maxAge", "ignoreInputs", "envIgnore"};
const Keys kOutputKeys = {"artifacts", "params", "metrics"};
const Keys kArtifactKeys = {"name", "path", "type"};
const Keys kOutParamKeys = {"name", "path"};
const Keys kEnvValueKeys = {"secret"};
const Keys kSecretKeys = {"name", "key"};
const Keys kForeachKeys = {"range"};
const Keys kRangeKeys = {"start", "end", "step"};
const Keys kScheduleKeys = {"cron",     "timezone",     "concurrencyPolicy", "startingDeadline",
                            "catchup",  "catchupLimit", "historyLimit",      "params"};

const Keys kParamTypes = {"string", "int", "number", "bool", "list"};
const Keys kArtifactTypes = {"dataset", "model", "metrics", "other"};
const Keys kRetryOn = {"Always", "OnFailure", "OnError", "Failure", "Error"};
const Keys kUpstreamSkipped = {"skip", "run"};
const Keys kExecutors = {"local", "kubernetes"};
const Keys kConcurrency = {"Allow", "Forbid", "Replace"};
const Keys kCatchup = {"none", "latest", "all"};
const Keys kRoots = {"params", "steps", "item", "item_index", "inputs", "run", "pipeline"};
const Keys kRunFields = {"id", "name", "status"};
const Keys kPipelineFields = {"name", "dir"};
const Keys kStepRefFields = {"outputs", "phase"};
const Keys kOutputKinds = {"artifacts", "params", "metrics"};

bool Contains(const Keys& keys, std::string_view k) {
  for (const auto& x : keys)
    if (x == k) return true;
  return false;
}

std::string JoinKeys(const Keys& keys) {
  std::string out;
  for (const auto& k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

std::string Describe(const YamlNode& n) {
  switch (n.kind) {
    case YamlNode::Kind::kNull: return "nothing";
    case YamlNode::Kind::kSequence: return "a list";
    case YamlNode::Kind::kMap: return "a map";
    case YamlNode::Kind::kScalar: break;
  }
  switch (ResolveScalar(n)) {
    case PlainType::kBool: return "'" + n.value + "' (a bool)";
    case PlainType::kInt: return "'" + n.value + "' (an int)";
    case PlainType::kFloat: return "'" + n.value + "' (a number)";
    case PlainType::kNull: return "nothing";
    case PlainType::kString: return n.quoted ? "\"" + n.value + "\" (a string)" : "'" + n.value + "'";
  }
  return "'" + n.value + "'";
}

// At most the first kMaxFileBytes + 1 bytes of `in`: one byte past the
// limit is enough to report it (CheckYamlText); a huge file is never read
// whole. Pipeline and component files both come through here.
std::string ReadUpToLimit(std::ifstream& in) {
  std::string text;
  char chunk[64 * 1024];
  while (text.size() <= kMaxFileBytes && in.read(chunk, sizeof chunk).gcount() > 0)
    text.append(chunk, static_cast<size_t>(in.gcount()));
  return text;
}

std::string FileDigestHex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// ---------------------------------------------------------------------------
// The loader: YAML tree -> PipelineSpec plus diagnostics
// ---------------------------------------------------------------------------

// One input of a component: a typed parameter or an artifact.
struct ComponentInput {
  std::string name;
  bool artifact = false;  // `type: artifact`: bound to another step's artifact
  ParamType type = ParamType::kString;
  std::optional<Json> default_value;
  SourceLocation loc;  // of its name in the component file
};

struct SubPipeline;

// A component file, as the steps that use it see it.
struct Component {
  std::string file;    // as diagnostics name it
  std::string uses;    // relative to the pipeline's directory, normalised
  // What the step records: `uses`, or a git source with its ref resolved
  // to the commit ("git+<url>@<commit>#<path>").
  std::string source;
  std::string digest;  // SHA-256 of its bytes
  std::vector<ComponentInput> inputs;
  StepSpec body;  // the pipeline's defaults, then the component's step and outputs
  // A component with `steps:` (a graph): its steps, loaded and expanded
  // like a sub-pipeline's, the inputs as its params; null for one `step:`.
  std::shared_ptr<SubPipeline> graph;

  const ComponentInput* Find(const std::string& name) const {
    for (const auto& in : inputs)
      if (in.name == name) return &in;
    return nullptr;
  }
  std::vector<std::string> InputNames() const {
    std::vector<std::string> names;
    for (const auto& in : inputs) names.push_back(in.name);
    return names;
  }
};

// A sub-pipeline file, loaded, validated and with its own sub-pipelines
// expanded, as the steps that run it see it.
struct SubPipeline {
  PipelineSpec spec;
  std::string file;     // the path as shown in diagnostics
  std::string uses;     // relative to the using pipeline's directory
  std::string source;   // `uses`, or the Git source with its ref resolved
  std::string rel_dir;  // its directory relative to the using pipeline's
  // Declared outputs: name -> {inner step, that step's output}.
  std::map<std::string, std::pair<std::string, std::string>> artifacts, params;
  // Its params as `with:` binds them (a component graph's inputs, with
  // their artifact types).
  std::vector<ComponentInput> inputs;
  // For a component graph: "component", and the file's SHA-256, recorded
  // with each inner step as a one-step component's is; else "sub-pipeline".
  std::string kind = "sub-pipeline";
  std::string digest;
};

// Per-step facts the checks after parsing need, beside the StepSpec.
struct StepInfo {
  const YamlNode* node = nullptr;
  SourceLocation name_loc;
  bool has_name = false;
  std::vector<int> deps;  // indices into Loader::all_
  bool foreach_written = false;                 // `foreach:` present, even if invalid
  const YamlNode* ignore_inputs_node = nullptr;  // the step's own cache.ignoreInputs
  // `item.<field>...` -> what is wrong with it ("" when every item has the field).
  std::unordered_map<std::string, std::string> item_field_errors;
};

class Loader {
 public:
  // `parse_cache`: parse through the cache of parsed files (yaml_cache.h).
  Loader(std::string_view text, std::string file, std::string dir, const OperatorRegistry& operators,
         bool parse_cache = false)
      : text_(text), file_(std::move(file)), dir_(std::move(dir)), parse_cache_(parse_cache), ops_(operators) {
    step_keys_ = kStepBaseKeys;
    for (const Operator* op : ops_.All()) {
      step_types_.emplace_back(op->Name());
      if (!op->SectionKey().empty()) step_keys_.emplace_back(op->SectionKey());
    }
    step_keys_.push_back("kubernetes");
  }

  LoadResult Run() {
    const std::string digest = FileDigestHex(text_);
    doc_ = parse_cache_ ? ParseYamlCached(text_, digest) : ParseYaml(text_);
    bool fatal = false;
    for (const auto& p : doc_.problems) {
      AddDiag({file_, p.line, p.column}, Severity::kError, p.message);
      fatal = fatal || p.fatal;
    }
    if (!fatal) Validate();
    std::stable_sort(diags_.begin(), diags_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      if (a.loc.line != b.loc.line) return a.loc.line < b.loc.line;
      return a.loc.column < b.loc.column;
    });
    if (stopped_)
      diags_.push_back({{file_, 0, 0}, Severity::kError,
                        "more than " + WithThousands(kMaxErrors) + " errors; fix these and lint again"});
    LoadResult result;
    bool has_error = std::any_of(diags_.begin(), diags_.end(),
                                 [](const Diagnostic& d) { return d.severity == Severity::kError; });
    if (!has_error) {
      spec_.file = file_;
      spec_.file_digest = digest;
      result.spec = std::move(spec_);
    }
    result.diagnostics = std::move(diags_);
    return result;
  }

 private:
  // -- diagnostics ----------------------------------------------------------

  SourceLocation Loc(const YamlNode& n) const { return {file_, n.line, n.column}; }

  // Past kMaxErrors errors, diagnostics are dropped and `stopped_` ends the
  // checks: a file with an error per step would otherwise cost a "did you
  // mean" search over every step for each of them.
  void AddDiag(SourceLocation loc, Severity sev, std::string message) {
    if (stopped_) return;
    if (sev == Severity::kError && ++errors_ > kMaxErrors) {
      stopped_ = true;
      return;
    }
    diags_.push_back({std::move(loc), sev, std::move(message)});
  }
  void Err(const YamlNode& n, std::string message) { AddDiag(Loc(n), Severity::kError, std::move(message)); }
  void Warn(const YamlNode& n, std::string message) { AddDiag(Loc(n), Severity::kWarning, std::move(message)); }
  void ErrAt(const SourceLocation& loc, std::string message) { AddDiag(loc, Severity::kError, std::move(message)); }
  void WarnAt(const SourceLocation& loc, std::string message) {
    AddDiag(loc, Severity::kWarning, std::move(message));
  }

  const YamlNode& N(uint32_t i) const { return doc_.nodes[i]; }

  // -- generic shape checks ---------------------------------------------------

  // Calls fn(key, value) for every entry of `map` whose key is in `allowed`,
  // reporting the others as unknown keys of `where`.
  template <typename Fn>
  void Entries(const YamlNode& map, const Keys& allowed, const std::string& where, Fn&& fn) {
    const auto& kids = map.children;
    for (size_t i = 0; i + 1 < kids.size(); i += 2) {
      const YamlNode& key = N(kids[i]);
      const YamlNode& value = N(kids[i + 1]);
      if (!key.IsScalar()) continue;  // reported by the tree builder
      if (!Contains(allowed, key.value)) {
        UnknownKey(map, key, allowed, where);
        continue;
      }
      fn(key.value, key, value);
    }
  }

  // `key` is a key of `map` that is not in `allowed`.
  void UnknownKey(const YamlNode& map, const YamlNode& key, const Keys& allowed, const std::string& where) {
    std::string m = ClosestMatch(key.value, allowed);
    if (!m.empty()) suggested_.emplace(&map, m);
    if (!m.empty())
      Err(key, "unknown key '" + key.value + "' in " + where + "; did you mean '" + m + "'?");
    else
      Err(key, "unknown key '" + key.value + "' in " + where + "; valid keys are: " + JoinKeys(allowed));
  }

  // True when an unknown key of `map` was taken for `key` ("did you mean"),
  // so that "missing key" is not reported as well.
  bool Suggested(const YamlNode& map, const std::string& key) const {
    return suggested_.count({&map, key}) > 0;
  }

  bool ExpectMap(const YamlNode& n, const std::string& what) {
    if (n.IsMap()) return true;
    Err(n, "'" + what + "' must be a map, got " + Describe(n));
    return false;
  }

  bool ExpectSeq(const YamlNode& n, const std::string& what) {
    if (n.IsSequence()) return true;
    Err(n, "'" + what + "' must be a list, got " + Describe(n));
    return false;
  }

  // Any scalar, as text. Null, lists and maps are errors.
  std::optional<std::string> Str(const YamlNode& n, const std::string& what) {
    if (n.IsScalar() && (n.quoted || !IsYamlNull(n.value))) return n.value;
    Err(n, "'" + what + "' must be a string, got " + Describe(n));
    return std::nullopt;
  }

  std::optional<int64_t> Int(const YamlNode& n, const std::string& what) {
    int64_t v;
    if (n.IsScalar() && !n.quoted && IsYamlInt(n.value, &v)) return v;
    std::string hint;
    if (n.IsScalar() && n.quoted && IsYamlInt(n.value, &v)) hint = "; remove the quotes";
    Err(n, "'" + what + "' must be an integer, got " + Describe(n) + hint);
    return std::nullopt;
  }

  std::optional<double> Number(const YamlNode& n, const std::string& what) {
    double d;
    if (n.IsScalar() && !n.quoted && IsYamlFloat(n.value, &d)) return d;
    std::string hint;
    if (n.IsScalar() && n.quoted && IsYamlFloat(n.value, &d)) hint = "; remove the quotes";
    Err(n, "'" + what + "' must be a number, got " + Describe(n) + hint);
    return std::nullopt;
  }

  std::optional<bool> Bool(const YamlNode& n, const std::string& what) {
    bool b;
    if (n.IsScalar() && !n.quoted && IsYamlBool(n.value, &b)) return b;
    std::string hint;
    if (n.IsScalar() && (n.value == "yes" || n.value == "no" || n.value == "on" || n.value == "off"))
      hint = "; write true or false";
    Err(n, "'" + what + "' must be true or false, got " + Describe(n) + hint);
    return std::nullopt;
  }

  std::optional<std::string> Enum(const YamlNode& n, const std::string& what, const Keys& values) {
    auto s = Str(n, what);
    if (!s) return std::nullopt;
    if (Contains(values, *s)) return s;
    std::string m = ClosestMatch(*s, values);
    Err(n, "invalid " + what + " '" + *s + "'" + (m.empty() ? "" : "; did you mean '" + m + "'?") +
               (m.empty() ? "; valid values are: " + JoinKeys(values) : ""));
    return std::nullopt;
  }

  std::optional<Duration> Dur(const YamlNode& n, const std::string& what) {
    if (!n.IsScalar() || (!n.quoted && IsYamlNull(n.value))) {
      Err(n, "'" + what + "' must be a duration such as 30s, 10m or 1h30m, got " + Describe(n));
      return std::nullopt;
    }
    auto d = ParseDuration(n.value);
    if (!d) {
      Err(n, "'" + what + "': " + d.error().message());
      return std::nullopt;
    }
    return *d;
  }

  std::vector<std::string> StrList(const YamlNode& n, const std::string& what, bool allow_scalar) {
    std::vector<std::string> out;
    if (allow_scalar && n.IsScalar()) {
      if (auto s = Str(n, what)) out.push_back(*s);
      return out;
    }
    if (!ExpectSeq(n, what)) return out;
    for (uint32_t c : n.children)
      if (auto s = Str(N(c), what + " item")) out.push_back(*s);
    return out;
  }

  // The location of a template's first content character (after a quote).
  SourceLocation TemplateLoc(const YamlNode& n) const {
    SourceLocation loc = Loc(n);
    if (n.quoted && n.pos >= 0 && static_cast<size_t>(n.pos) < text_.size() &&
        (text_[n.pos] == '"' || text_[n.pos] == '\''))
      loc.column += 1;
    return loc;
  }

  // A scalar as a Template (numbers and bools keep their spelling).
  std::optional<Template> Tmpl(const YamlNode& n, const std::string& what) {
    auto s = Str(n, what);
    if (!s) return std::nullopt;
    return Template{std::move(*s), TemplateLoc(n)};
  }

  Json ToJson(const YamlNode& n) {
    switch (n.kind) {
      case YamlNode::Kind::kNull: return nullptr;
      case YamlNode::Kind::kSequence: {
        Json a = Json::array();
        for (uint32_t c : n.children) a.push_back(ToJson(N(c)));
        return a;
      }
      case YamlNode::Kind::kMap: {
        Json o = Json::object();
        for (size_t i = 0; i + 1 < n.children.size(); i += 2) o[N(n.children[i]).value] = ToJson(N(n.children[i + 1]));
        return o;
      }
      case YamlNode::Kind::kScalar: break;
    }
    switch (ResolveScalar(n)) {
      case PlainType::kNull: return nullptr;
      case PlainType::kBool: {
        bool b = false;
        IsYamlBool(n.value, &b);
        return b;
      }
      case PlainType::kInt: {
        int64_t v = 0;
        IsYamlInt(n.value, &v);
        return v;
      }
      case PlainType::kFloat: {
        double d = 0;
        IsYamlFloat(n.value, &d);
        return d;
      }
      case PlainType::kString: return n.value;
    }
    return n.value;
  }

  // -- top level --------------------------------------------------------------

  void Validate() {
    if (doc_.root == YamlDocument::kNoRoot || N(doc_.root).IsNull()) {
      ErrAt({file_, 1, 1}, "the file is empty; a pipeline needs apiVersion, kind, metadata and steps");
      return;
    }
    const YamlNode& root = N(doc_.root);
    if (!root.IsMap()) {
      Err(root, "a pipeline file must be a map with apiVersion, kind, metadata and steps, got " + Describe(root));
      return;
    }
    if (!WithinCountLimits(root)) return;
    std::unordered_map<std::string, const YamlNode*> top;
    Entries(root, kTopKeys, "the pipeline", [&](const std::string& k, const YamlNode&, const YamlNode& v) {
      top.emplace(k, &v);
    });
    auto get = [&](const char* k) -> const YamlNode* {
      auto it = top.find(k);
      return it == top.end() ? nullptr : it->second;
    };
    auto require = [&](const char* k, const char* example) {
      if (!get(k) && !Suggested(root, k)) Err(root, std::string("missing required key '") + k + "'; add " + example);
    };
    require("apiVersion", "'apiVersion: sluice.dev/v1'");
    require("kind", "'kind: Pipeline'");
    require("metadata", "'metadata: {name: my-pipeline}'");
    require("steps", "a 'steps:' list");

    if (auto* n = get("apiVersion")) {
      if (auto s = Str(*n, "apiVersion")) {
        spec_.api_version = *s;
        if (*s != "sluice.dev/v1") Err(*n, "unsupported apiVersion '" + *s + "'; use 'sluice.dev/v1'");
      }
    }
    if (auto* n = get("kind")) {
      if (auto s = Str(*n, "kind")) {
        spec_.kind = *s;
        if (*s != "Pipeline") Err(*n, "unsupported kind '" + *s + "'; use 'Pipeline'");
      }
    }
    if (auto* n = get("metadata")) ParseMetadata(*n);
    if (auto* n = get("params")) ParseParams(*n);
    for (const auto& p : spec_.params) param_index_.emplace(p.name, &p);
    if (auto* n = get("defaults")) ParseDefaults(*n);
    if (auto* n = get("timeout")) {
      if (auto d = Dur(*n, "timeout")) {
        if (d->count() <= 0) Err(*n, "'timeout' must be longer than 0");
        else spec_.timeout = *d;
      }
    }
    if (auto* n = get("executor"))
      if (auto s = Enum(*n, "executor", kExecutors)) spec_.executor = *s;
    if (auto* n = get("namespace")) {
      if (auto s = Str(*n, "namespace")) {
        if (!IsDnsLabel(*s))
          Err(*n, "invalid namespace '" + *s + "'; use lower-case letters, digits and '-' (at most 63)");
        spec_.namespace_ = *s;
      }
    }
    if (auto* n = get("artifacts")) {
      if (auto s = Str(*n, "artifacts")) {
        if (auto loc = ParseS3Location(*s); !loc) Err(*n, "invalid artifact store: " + loc.error().message());
        else spec_.artifacts = *s;
      }
    }
    if (auto* n = get("steps")) ParseStepList(*n, false);
    if (auto* n = get("finally")) ParseStepList(*n, true);
    if (auto* n = get("schedule")) ParseSchedule(*n);
    CheckSteps();
    if (auto* n = get("outputs")) ParsePipelineOutputs(*n);
    if (errors_ == 0) ExpandSubPipelines();
  }

  // The limits of dsl/limits.h on how many steps, params and env entries a
  // file declares, and on `defaults`, which is copied into every step.
  // Reports the first one exceeded, where it is exceeded; the rest of the
  // file is then not validated.
  bool WithinCountLimits(const YamlNode& root) {
    const YamlNode* steps = nullptr;
    const YamlNode* finally = nullptr;
    const YamlNode* params = nullptr;
    const YamlNode* defaults = nullptr;
    for (size_t i = 0; i + 1 < root.children.size(); i += 2) {
      const YamlNode& key = N(root.children[i]);
      const YamlNode* value = &N(root.children[i + 1]);
      if (!key.IsScalar()) continue;
      if (key.value == "steps") steps = value;
      else if (key.value == "finally") finally = value;
      else if (key.value == "params") params = value;
      else if (key.value == "defaults") defaults = value;
    }
    auto env_of = [&](const YamlNode& map) -> const YamlNode* {
      for (size_t i = 0; i + 1 < map.children.size(); i += 2)
        if (N(map.children[i]).IsScalar() && N(map.children[i]).value == "env") return &N(map.children[i + 1]);
      return nullptr;
    };
    auto env_ok = [&](const YamlNode* env) {
      if (!env || !env->IsMap() || env->children.size() / 2 <= kMaxEnvEntries) return true;
      Err(N(env->children[2 * kMaxEnvEntries]), "more than " + std::to_string(kMaxEnvEntries) +
                                                    " environment variables in one 'env'; pass the rest in a file");
      return false;
    };
    size_t step_count = 0;
    for (const YamlNode* list : {steps, finally}) {
      if (!list || !list->IsSequence()) continue;
      for (uint32_t c : list->children) {
        if (++step_count > kMaxSteps) {
          Err(N(c), "more than " + WithThousands(kMaxSteps) +
                        " steps (steps and finally together); split the pipeline into several");
          return false;
        }
        if (N(c).IsMap() && !env_ok(env_of(N(c)))) return false;
      }
    }
    if (params && params->IsMap() && params->children.size() / 2 > kMaxParams) {
      Err(N(params->children[2 * kMaxParams]),
          "more than " + WithThousands(kMaxParams) + " params; pass structured settings as one list parameter");
      return false;
    }
    if (defaults && defaults->IsMap()) {
      if (!env_ok(env_of(*defaults))) return false;
      const uint64_t size = ExpandedSize(doc_, static_cast<uint32_t>(defaults - doc_.nodes.data()));
      if (step_count > 0 && size * step_count > kMaxYamlNodes) {
        Err(*defaults, "'defaults' (" + WithThousands(size) + " YAML nodes) is copied into each of the " +
                           WithThousands(step_count) + " steps, more than " + WithThousands(kMaxYamlNodes) +
                           " nodes in all; set the large parts in the steps that need them");
        return false;
      }
    }
    return true;
  }

  void ParseMetadata(const YamlNode& n) {
    if (!ExpectMap(n, "metadata")) return;
    bool has_name = false;
    Entries(n, kMetadataKeys, "metadata", [&](const std::string& k, const YamlNode&, const YamlNode& v) {
      if (k == "name") {
        has_name = true;
        if (auto s = Str(v, "metadata.name")) {
          spec_.name = *s;
          if (!IsDnsLabel(*s)) {
            std::string fix = ToDnsLabel(*s);
            Err(v, "invalid pipeline name '" + *s +
                       "': use lower-case letters, digits and '-' (at most 63, starting and ending with a "
                       "letter or digit)" +
                       (fix.empty() ? "" : "; did you mean '" + fix + "'?"));
          }
        }
      } else if (k == "description") {
        if (auto s = Str(v, "metadata.description")) spec_.description = *s;
      } else if (k == "labels") {
        if (!ExpectMap(v, "metadata.labels")) return;
        for (size_t i = 0; i + 1 < v.children.size(); i += 2) {
          const YamlNode& val = N(v.children[i + 1]);
          if (auto s = Str(val, "label " + N(v.children[i]).value)) spec_.labels[N(v.children[i]).value] = *s;
        }
      }
    });
    if (!has_name && !Suggested(n, "name")) Err(n, "missing required key 'name' in metadata");
  }

  // -- params -----------------------------------------------------------------

  void ParseParams(const YamlNode& n) {
    if (!ExpectMap(n, "params")) return;
    for (size_t i = 0; i + 1 < n.children.size(); i += 2) {
      if (stopped_) break;
      const YamlNode& key = N(n.children[i]);
      const YamlNode& val = N(n.children[i + 1]);
      if (!key.IsScalar()) continue;
      ParamSpec p;
      p.name = key.value;
      p.loc = Loc(key);
      if (!IsIdentifier(p.name))
        Err(key, "invalid parameter name '" + p.name +
                     "': use letters, digits and '_', starting with a letter (it is used as params." + p.name + ")");
      if (!val.IsMap()) {
        // Shorthand: `name: value` is a default whose type is inferred.
        if (val.IsNull()) {
          Err(val, "parameter '" + p.name + "' has no value; write '" + p.name +
                       ": {type: string}' for a required parameter or give a default");
          continue;
        }
        p.type = InferType(val);
        if (auto d = TypedValue(val, p.type, p.name)) p.default_value = *d;
        spec_.params.push_back(std::move(p));
        continue;
      }
      const YamlNode* type_node = nullptr;
      const YamlNode* default_node = nullptr;
      const YamlNode* required_node = nullptr;
      std::optional<bool> required;
      Entries(val, kParamKeys, "parameter '" + p.name + "'",
              [&](const std::string& k, const YamlNode&, const YamlNode& v) {
                if (k == "type") type_node = &v;
                else if (k == "default") default_node = &v;
                else if (k == "required") {
                  required_node = &v;
                  required = Bool(v, "required");
                } else if (k == "description") {
                  if (auto s = Str(v, "description")) p.description = *s;
                } else if (k == "secret") {
                  if (auto b = Bool(v, "secret")) p.secret = *b;
                }
              });
      bool type_ok = true;
      if (type_node) {
        if (auto t = Enum(*type_node, "parameter type", kParamTypes)) {
          for (int ti = 0; ti < 5; ++ti)
            if (*t == ParamTypeName(static_cast<ParamType>(ti))) p.type = static_cast<ParamType>(ti);
        } else {
          type_ok = false;
        }
      } else if (default_node && !default_node->IsNull()) {
        p.type = InferType(*default_node);
      }
      if (default_node && default_node->IsNull()) {
        Err(*default_node, "parameter '" + p.name + "' has an empty default; give a value or remove 'default'");
      } else if (default_node && type_ok) {
        if (auto d = TypedValue(*default_node, p.type, p.name)) p.default_value = *d;
      }
      p.required = !default_node;
      if (required && *required && default_node)
        Warn(*required_node, "parameter '" + p.name + "' is required but has a default; the default is never used");
      if (required && !*required && !default_node)
        Err(*required_node, "parameter '" + p.name + "' is optional but has no default; add 'default:'");
      spec_.params.push_back(std::move(p));
    }
  }

  // spec_.FindParam in O(1); params never change after ParseParams.
  const ParamSpec* FindParam(const std::string& name) const {
    auto it = param_index_.find(name);
    return it == param_index_.end() ? nullptr : it->second;
  }

  ParamType InferType(const YamlNode& n) {
    if (n.IsSequence()) return ParamType::kList;
    switch (ResolveScalar(n)) {
      case PlainType::kBool: return ParamType::kBool;
      case PlainType::kInt: return ParamType::kInt;
      case PlainType::kFloat: return ParamType::kNumber;
      default: return ParamType::kString;
    }
  }

  // The JSON value of `n` when it fits `type`, else an error.
  std::optional<Json> TypedValue(const YamlNode& n, ParamType type, const std::string& param) {
    auto bad = [&]() {
      Err(n, "default of parameter '" + param + "' must be " + (type == ParamType::kInt ? "an " : "a ") +
                 ParamTypeName(type) + ", got " + Describe(n));
      return std::nullopt;
    };
    if (type == ParamType::kList) {
      if (!n.IsSequence()) return bad();
      return ToJson(n);
    }
    if (!n.IsScalar()) return bad();
    PlainType pt = ResolveScalar(n);
    switch (type) {
      case ParamType::kString: return Json(n.value);
      case ParamType::kInt:
        if (pt != PlainType::kInt) return bad();
        return ToJson(n);
      case ParamType::kNumber:
        if (pt != PlainType::kInt && pt != PlainType::kFloat) return bad();
        return ToJson(n);
      case ParamType::kBool:
        if (pt != PlainType::kBool) return bad();
        return ToJson(n);
      case ParamType::kList: break;
    }
    return bad();
  }

  // -- defaults and steps -----------------------------------------------------

  void ParseDefaults(const YamlNode& n) {
    if (!ExpectMap(n, "defaults")) return;
    const auto& kids = n.children;
    for (size_t i = 0; i + 1 < kids.size(); i += 2) {
      const YamlNode& key = N(kids[i]);
      if (!key.IsScalar()) continue;
      if (!Contains(kDefaultKeys, key.value)) {
        if (Contains(step_keys_, key.value))
          Err(key, "'" + key.value + "' cannot be set in defaults; defaults may set: " + JoinKeys(kDefaultKeys));
        else
          UnknownKey(n, key, kDefaultKeys, "defaults");
        continue;
      }
      if (key.value == "kubernetes") {
        // Merged key by key into every step's own `kubernetes:` section.
        if (ExpectMap(N(kids[i + 1]), "kubernetes")) default_kubernetes_ = KubernetesSection(N(kids[i + 1]));
        continue;
      }
      StepField(base_, key.value, N(kids[i + 1]), nullptr, "defaults");
    }
  }

  // A `kubernetes:` section as JSON. Its other settings are checked when the
  // object is built; `object`, `logs` and `queue` are checked here, where
  // their place is known.
  Json KubernetesSection(const YamlNode& n) {
    for (size_t i = 0; i + 1 < n.children.size(); i += 2) {
      const YamlNode& key = N(n.children[i]);
      if (key.IsScalar() && key.value == "object") Enum(N(n.children[i + 1]), "kubernetes.object", kKubernetesObjects);
      if (key.IsScalar() && key.value == "logs") Enum(N(n.children[i + 1]), "kubernetes.logs", kKubernetesLogs);
      if (key.IsScalar() && key.value == "queue") KueueQueue(N(n.children[i + 1]));
    }
    return ToJson(n);
  }

  // `kubernetes.queue`: the name of a Kueue LocalQueue in the step's
  // namespace, which is also the value of its queue-name label.
  void KueueQueue(const YamlNode& v) {
    auto q = Str(v, "kubernetes.queue");
    if (!q || IsDnsLabel(*q)) return;
    std::string fix = ToDnsLabel(*q);
    Err(v, "invalid kubernetes.queue '" + *q +
               "': a Kueue LocalQueue name uses lower-case letters, digits and '-' (at most 63, starting and "
               "ending with a letter or digit)" +
               (fix.empty() ? "" : "; did you mean '" + fix + "'?"));
  }

  void ParseStepList(const YamlNode& n, bool is_finally) {
    const char* what = is_finally ? "finally" : "steps";
    if (!ExpectSeq(n, what)) return;
    if (n.children.empty() && !is_finally) Err(n, "'steps' is empty; a pipeline needs at least one step");
    auto& out = is_finally ? spec_.finally_steps : spec_.steps;
    out.reserve(n.children.size());
    for (uint32_t c : n.children) {
      if (stopped_) break;
      const YamlNode& sn = N(c);
      if (!sn.IsMap()) {
        Err(sn, std::string("each entry of '") + what + "' must be a step (a map with name and command), got " +
                    Describe(sn));
        continue;
      }
      const YamlNode* uses = ValueOf(sn, "uses");
      const YamlNode* pipe = ValueOf(sn, "pipeline");
      if (pipe && uses) {
        Err(*pipe, "a step either uses a component ('uses') or runs a sub-pipeline ('pipeline'), not both");
        pipe = nullptr;
      }
      if (pipe && is_finally) {
        Err(*pipe, "a finally step cannot run a sub-pipeline; run it from 'steps'");
        pipe = nullptr;
      }
      const Component* component = uses ? UseComponent(*uses) : nullptr;
      const SubPipeline* sub = pipe ? UseSubPipeline(*pipe) : nullptr;
      if (component && component->graph) {
        if (is_finally) {
          Err(*uses, "a finally step cannot use a component with 'steps:'; use it from 'steps'");
          component = nullptr;
        } else {
          sub = component->graph.get();
        }
      }
      StepSpec s = sub ? StepSpec() : component ? component->body : base_;
      s.loc = Loc(sn);
      s.is_finally = is_finally;
      StepInfo info;
      info.node = &sn;
      ParseStep(sn, s, info, uses ? uses : pipe, sub ? sub->kind : "");
      if (component && !component->graph) {
        BindWith(s, {"component " + component->file, "input", &component->inputs}, ValueOf(sn, "with"), *uses);
        RecordComponent(s, *component);
      }
      if (sub) BindGroup(s, *sub, ValueOf(sn, "with"), uses ? *uses : *pipe);
      out.push_back(std::move(s));
      (is_finally ? finally_info_ : step_info_).push_back(std::move(info));
    }
  }

  // The value of `key` in map `n`; null when absent.
  const YamlNode* ValueOf(const YamlNode& n, const std::string& key) const {
    if (!n.IsMap()) return nullptr;
    for (size_t i = 0; i + 1 < n.children.size(); i += 2)
      if (N(n.children[i]).IsScalar() && N(n.children[i]).value == key) return &N(n.children[i + 1]);
    return nullptr;
  }

  // `uses` is the step's `uses:` value when it has one: the step then sets
  // only kUsingStepKeys, and its command comes from the component.
  // `group`: the step runs a group of steps, "sub-pipeline" (`uses` is its
  // `pipeline:` value instead) or "component" (a component graph), and sets
  // only kSubPipelineStepKeys.
  void ParseStep(const YamlNode& sn, StepSpec& s, StepInfo& info, const YamlNode* uses = nullptr,
                 const std::string& group = "") {
    const bool sub_pipeline = !group.empty();
    // The name first, so that messages about other fields can name the step.
    for (size_t i = 0; i + 1 < sn.children.size(); i += 2) {
      const YamlNode& key = N(sn.children[i]);
      if (key.IsScalar() && key.value == "name") {
        const YamlNode& v = N(sn.children[i + 1]);
        info.has_name = true;
        info.name_loc = Loc(v);
        if (auto name = Str(v, "name")) {
          s.name = *name;
          if (!IsDnsLabel(*name)) {
            std::string fix = ToDnsLabel(*name);
            Err(v, "invalid step name '" + *name +
                       "': use lower-case letters, digits and '-' (at most 63, starting and ending with a letter "
                       "or digit)" +
                       (fix.empty() ? "" : "; did you mean '" + fix + "'?"));
          }
        }
      }
    }
    std::string where = s.name.empty() ? std::string("step") : "step '" + s.name + "'";
    const YamlNode* parallelism = nullptr;
    const YamlNode* min_ratio = nullptr;
    const YamlNode* section = nullptr;
    std::string section_key;
    bool has_command = false, has_type = false;
    size_t errors_before_type = 0;
    bool type_ok = true;
    Json kubernetes;  // the step's `kubernetes:` section, kept beside its operator section
    const YamlNode* priority = nullptr;  // the step's own `priority:` value
    Entries(sn, step_keys_, where, [&](const std::string& k, const YamlNode& key, const YamlNode& v) {
      if (k == "name" || k == "uses" || k == "pipeline") return;
      if (k == "priority") priority = &v;
      if (sub_pipeline && k == "retries") {
        // Argo retries a task that runs a DAG as a whole; sluice would
        // retry each inner step on its own: refused rather than surprise.
        Err(key, "'retries' cannot be set on a step that runs a " + GroupName(group) +
                     ": it would retry each inner step on its own, not the group as a whole as Argo retries a "
                     "DAG task; set 'retries' on the " +
                     (group == "component" ? std::string("component's steps") : "sub-pipeline's steps or defaults"));
        return;
      }
      if (sub_pipeline && !Contains(kSubPipelineStepKeys, k)) {
        Keys keys = kSubPipelineStepKeys;
        if (group == "component") keys[1] = "uses";
        Err(key, "'" + k + "' comes from the " + group + "; a step that runs a " + GroupName(group) +
                     " may set only: " + JoinKeys(keys));
        return;
      }
      if (uses && !sub_pipeline && !Contains(kUsingStepKeys, k)) {
        Err(key, "'" + k + "' comes from the component; a step that uses one may set only: " +
                     JoinKeys(kUsingStepKeys));
        return;
      }
      if (k == "with") {
        if (!uses) Err(key, "'with' binds the inputs of a component; add 'uses: path/to/component.yaml'");
        return;
      }
      if (k == "parallelism") {
        parallelism = &v;
        return;
      }
      if (k == "minSuccessRatio") {
        min_ratio = &v;
        return;
      }
      if (k == "kubernetes") {
        // Kubernetes-only settings (serviceAccountName, priorityClassName,
        // imagePullSecrets, queue, ...): docs/kubernetes.md.
        if (ExpectMap(v, k)) kubernetes = KubernetesSection(v);
        return;
      }
      if (ops_.FindBySection(k)) {
        if (section) {
          Err(key, "a step has at most one operator section; found '" + section_key + "' and '" + k + "'");
          return;
        }
        section = &v;
        section_key = k;
        if (ExpectMap(v, k)) s.config = ToJson(v);
        return;
      }
      if (k == "command") has_command = true;
      if (k == "type") {
        has_type = true;
        errors_before_type = diags_.size();
      }
      StepField(s, k, v, &info, where);
      if (k == "type" && diags_.size() != errors_before_type) type_ok = false;
    });
    if (default_kubernetes_.is_object()) {
      Json merged = default_kubernetes_;
      if (kubernetes.is_object()) merged.update(kubernetes);
      kubernetes = std::move(merged);
    }
    // On Kueue a queued step's priority N is the WorkloadPriorityClass
    // sluice-priority-N, which exists only for N > 0.
    if (priority && s.priority < 0 && kubernetes.is_object() && kubernetes.contains("queue"))
      Err(*priority, "a step with kubernetes.queue takes a priority of 0 or more (priority N > 0 is Kueue's "
                     "WorkloadPriorityClass sluice-priority-N), got " + std::to_string(s.priority));
    if (!kubernetes.is_null() && !s.config.contains("kubernetes")) s.config["kubernetes"] = std::move(kubernetes);
    if (!info.has_name && !Suggested(sn, "name")) Err(sn, "step is missing required key 'name'");
    const Operator* op = ops_.Find(s.type);
    if (type_ok && op && op->RequiresCommand() && !has_command && !uses && !Suggested(sn, "command"))
      Err(sn, where + " is missing required key 'command' (an argv list, e.g. [python3, train.py])");
    if (section && type_ok) {
      const std::string need(ops_.FindBySection(section_key)->Name());
      if (s.type != need)
        Err(*section, "the '" + section_key + "' section needs 'type: " + need + "'" +
                          (has_type ? " (this step has type '" + s.type + "')" : ""));
      else if (section->IsMap() && op)
        CheckOperatorConfig(*op, s, *section);
    } else if (!section && type_ok && op && op->KubernetesOnly() && !uses) {
      // Such a type has nothing to run without its section: say so here.
      CheckOperatorConfig(*op, s, sn);
    }
    if (op) op->AddFixedOutputs(&s, Loc(sn));
    if (parallelism) {
      if (auto p = Int(*parallelism, "parallelism")) {
        if (*p < 0) Err(*parallelism, "'parallelism' must be 0 (unlimited) or more, got " + std::to_string(*p));
        else if (!s.foreach) Warn(*parallelism, "'parallelism' has no effect without 'foreach'");
        else s.foreach->parallelism = static_cast<int>(*p);
      }
    }
    if (min_ratio) {
      if (auto r = Number(*min_ratio, "minSuccessRatio")) {
        if (!(*r > 0 && *r <= 1))
          Err(*min_ratio, "'minSuccessRatio' must be more than 0 and at most 1 (a fraction of the items), got " +
                              min_ratio->value);
        else if (!s.foreach) Err(*min_ratio, "'minSuccessRatio' needs 'foreach': it is the fraction of the items "
                                             "that must succeed");
        else s.foreach->min_success_ratio = *r;
      }
    }
  }

  // "sub-pipeline", or "component graph" for "component".
  static std::string GroupName(const std::string& group) {
    return group == "component" ? "component graph" : group;
  }

  // -- components ------------------------------------------------------------

 public:
  // Parses this loader's text as a component file, its step body starting
  // from `base` (the using pipeline's defaults); `rel_dir` is the
  // component's directory relative to the pipeline's. Diagnostics go to
  // `diags` (in this file's locations); nullopt when there were errors.
  std::optional<Component> RunComponent(const StepSpec& base, const std::string& rel_dir,
                                        std::vector<Diagnostic>* diags) {
    component_mode_ = true;
    Component c;
    c.file = file_;
    c.digest = FileDigestHex(text_);
    c.body = base;
    doc_ = parse_cache_ ? ParseYamlCached(text_, c.digest) : ParseYaml(text_);
    bool fatal = false;
    for (const auto& p : doc_.problems) {
      AddDiag({file_, p.line, p.column}, Severity::kError, p.message);
      fatal = fatal || p.fatal;
    }
    if (!fatal) ValidateComponent(c, rel_dir);
    *diags = std::move(diags_);
    if (std::any_of(diags->begin(), diags->end(), [](const Diagnostic& d) { return d.severity == Severity::kError; }))
      return std::nullopt;
    return c;
  }

 private:
  void ValidateComponent(Component& c, const std::string& rel_dir) {
    if (doc_.root == YamlDocument::kNoRoot || N(doc_.root).IsNull()) {
      ErrAt({file_, 1, 1}, "the component file is empty; a component needs apiVersion, kind, inputs and step");
      return;
    }
    const YamlNode& root = N(doc_.root);
    if (!root.IsMap()) {
      Err(root, "a component file must be a map with apiVersion, kind, metadata, inputs, outputs and step, got " +
                    Describe(root));
      return;
    }
    if (!WithinCountLimits(root)) return;
    std::unordered_map<std::string, const YamlNode*> top;
    Entries(root, kComponentKeys, "the component", [&](const std::string& k, const YamlNode&, const YamlNode& v) {
      top.emplace(k, &v);
    });
    auto get = [&](const char* k) -> const YamlNode* {
      auto it = top.find(k);
      return it == top.end() ? nullptr : it->second;
    };
    for (const char* k : {"apiVersion", "kind"})
      if (!get(k) && !Suggested(root, k)) Err(root, std::string("missing required key '") + k + "' in the component");
    if (get("step") && get("steps"))
      Err(*get("steps"), "a component has either one 'step' or a graph of 'steps', not both");
    else if (!get("step") && !get("steps") && !Suggested(root, "step") && !Suggested(root, "steps"))
      Err(root, "missing required key 'step' (or 'steps', a graph of steps) in the component");
    if (auto* n = get("apiVersion"))
      if (auto v = Str(*n, "apiVersion"); v && *v != "sluice.dev/v1")
        Err(*n, "unsupported apiVersion '" + *v + "'; use 'sluice.dev/v1'");
    if (auto* n = get("kind"))
      if (auto v = Str(*n, "kind"); v && *v != "Component")
        Err(*n, "unsupported kind '" + *v + "' in a component file; use 'Component'");
    if (auto* n = get("metadata")) ParseMetadata(*n);
    if (auto* n = get("inputs")) ParseComponentInputs(c, *n);
    if (get("steps") && !get("step")) {
      ParseComponentGraph(c, *get("steps"), get("outputs"));
      return;
    }
    if (auto* n = get("step")) ParseComponentStep(c.body, *n);
    if (auto* n = get("outputs")) ParseOutputs(c.body, *n);
    CheckComponentTemplates(c);
    CheckCodeFiles();
    RewriteComponentPaths(c.body, rel_dir);
  }

  // A component's `steps:` (a graph), checked as a pipeline's steps whose
  // params are the component's inputs; `outputs` are declared as a
  // sub-pipeline's. Sets `c.graph`, with the graph's own sub-pipelines and
  // component graphs expanded, unless there were errors.
  void ParseComponentGraph(Component& c, const YamlNode& steps, const YamlNode* outputs) {
    for (const auto& in : c.inputs) {
      ParamSpec& p = spec_.params.emplace_back();
      p.name = in.name;
      p.type = in.artifact ? ParamType::kString : in.type;
      p.default_value = in.default_value;
      p.required = !in.default_value;
      p.loc = in.loc;
    }
    for (const auto& p : spec_.params) param_index_.emplace(p.name, &p);
    base_ = c.body;
    ParseStepList(steps, false);
    for (auto& s : spec_.steps) ReadComponentInputs(c, s);
    CheckSteps();
    if (outputs) ParsePipelineOutputs(*outputs);
    if (errors_ != 0) return;
    ExpandSubPipelines();
    auto graph = std::make_shared<SubPipeline>();
    graph->spec = std::move(spec_);
    graph->file = file_;
    graph->artifacts = std::move(out_artifacts_);
    graph->params = std::move(out_params_);
    graph->inputs = c.inputs;
    graph->kind = "component";
    graph->digest = c.digest;
    c.graph = std::move(graph);
  }

  // In a component graph's step, `inputs.<name>` names the component's
  // input unless the step declares an input of that name (in the step's own
  // `inputs:` values it always does): rewritten to `params.<name>`, the
  // graph's params. `{{ component.dir }}` becomes the graph's
  // `{{ pipeline.dir }}`, which the expansion points at the component's
  // directory. `params.*` and `pipeline.dir` written there are errors: a
  // component sees only its inputs, and names its files by component.dir.
  void ReadComponentInputs(const Component& c, StepSpec& s) {
    const bool plain = s.component_file.empty() && !sub_uses_.count(s.name);
    std::unordered_set<const Template*> own_inputs;
    for (const auto& [name, t] : s.inputs) own_inputs.insert(&t);
    ForEachMutableTemplate(s, [&](Template& t, bool is_template) {
      if (t.IsLiteral() && is_template) return;
      auto refs = expr::References(t.text, is_template);
      if (!refs) return;
      for (const auto& r : *refs) {
        const std::string full = r.ToString();
        if (r.path[0] == "params" || (plain && full == "pipeline.dir"))
          ErrAt(At(t, r.offset), full == "pipeline.dir"
                                     ? std::string("a component names its files with {{ component.dir }}, not "
                                                   "{{ pipeline.dir }}")
                                     : "a component sees only its inputs: '" + full +
                                           "' cannot be used here; declare an input and bind it under 'with:' in "
                                           "the step that uses the component");
      }
      RewriteReferences(t, is_template, [&](const expr::Reference& r) -> std::optional<std::string> {
        if (r.path[0] != "inputs" || r.path.size() < 2 || !c.Find(r.path[1])) return std::nullopt;
        if (!own_inputs.count(&t) && s.inputs.count(r.path[1])) return std::nullopt;
        return "params." + r.path[1];  // as long as "inputs.": the locations of later messages hold
      }, /*prefix_only=*/true);
      for (size_t at = t.text.find("{{"); at != std::string::npos; at = t.text.find("{{", at + 2)) {
        size_t end = t.text.find("}}", at);
        if (end == std::string::npos) break;
        if (Trim(std::string_view(t.text).substr(at + 2, end - at - 2)) == "component.dir")
          t.text.replace(at, end + 2 - at, "{{ pipeline.dir  }}");  // as long as "{{ component.dir }}"
      }
    });
  }

  void ParseComponentInputs(Component& c, const YamlNode& n) {
    if (!ExpectMap(n, "inputs")) return;
    if (n.children.size() / 2 > kMaxParams) {
      Err(n, "more than " + WithThousands(kMaxParams) + " inputs in one component");
      return;
    }
    for (size_t i = 0; i + 1 < n.children.size(); i += 2) {
      const YamlNode& key = N(n.children[i]);
      const YamlNode& val = N(n.children[i + 1]);
      if (!key.IsScalar()) continue;
      ComponentInput in;
      in.name = key.value;
      in.loc = Loc(key);
      if (!IsIdentifier(in.name))
        Err(key, "invalid input name '" + in.name + "': use letters, digits and '_' (it is used as inputs." +
                     in.name + ")");
      if (c.Find(in.name)) Err(key, "duplicate input '" + in.name + "'");
      if (!val.IsMap()) {
        Err(val, "input '" + in.name + "' must be a map such as {type: number, default: 0.1} or {type: artifact}, got " +
                     Describe(val));
        continue;
      }
      const YamlNode* default_node = nullptr;
      bool type_ok = true, has_type = false;
      Entries(val, kComponentInputKeys, "input '" + in.name + "'",
              [&](const std::string& k, const YamlNode&, const YamlNode& v) {
                if (k == "default") default_node = &v;
                if (k != "type") return;
                has_type = true;
                auto t = Enum(v, "input type", kComponentInputTypes);
                if (!t) {
                  type_ok = false;
                  return;
                }
                in.artifact = *t == "artifact";
                for (int ti = 0; ti < 5; ++ti)
                  if (*t == ParamTypeName(static_cast<ParamType>(ti))) in.type = static_cast<ParamType>(ti);
              });
      if (!has_type && !Suggested(val, "type"))
        Err(val, "input '" + in.name + "' needs a type: one of " + JoinKeys(kComponentInputTypes));
      if (default_node && in.artifact) {
        Err(*default_node, "artifact input '" + in.name + "' cannot have a default; the using step binds it");
      } else if (default_node && default_node->IsNull()) {
        Err(*default_node, "input '" + in.name + "' has an empty default; give a value or remove 'default'");
      } else if (default_node && type_ok) {
        if (auto d = TypedValue(*default_node, in.type, in.name)) in.default_value = *d;
      }
      c.inputs.push_back(std::move(in));
    }
  }

  void ParseComponentStep(StepSpec& s, const YamlNode& n) {
    if (!ExpectMap(n, "step")) return;
    Keys allowed = kComponentStepKeys;
    for (const Operator* op : ops_.All())
      if (!op->SectionKey().empty()) allowed.emplace_back(op->SectionKey());
    const YamlNode* section = nullptr;
    std::string section_key;
    Json kubernetes;
    Entries(n, allowed, "the component's step", [&](const std::string& k, const YamlNode&, const YamlNode& v) {
      if (k == "kubernetes") {
        if (ExpectMap(v, k)) kubernetes = KubernetesSection(v);
      } else if (ops_.FindBySection(k)) {
        section = &v;
        section_key = k;
        if (ExpectMap(v, k)) s.config = ToJson(v);
      } else {
        StepField(s, k, v, nullptr, "the component's step");
      }
    });
    if (!kubernetes.is_null()) s.config["kubernetes"] = std::move(kubernetes);
    s.loc = Loc(n);
    const Operator* op = ops_.Find(s.type);
    if (op && op->RequiresCommand() && s.command.empty() && !Suggested(n, "command"))
      Err(n, "the component's step is missing required key 'command' (an argv list, e.g. [python3, train.py])");
    if (section && op) {
      const std::string need(ops_.FindBySection(section_key)->Name());
      if (s.type != need) Err(*section, "the '" + section_key + "' section needs 'type: " + need + "'");
      else if (section->IsMap()) CheckOperatorConfig(*op, s, *section);
    }
    if (op) op->AddFixedOutputs(&s, Loc(n));
  }

  // A component sees its inputs, pipeline.{name,dir}, component.dir and
  // run.*, never the using pipeline's params or steps.
  void CheckComponentTemplates(const Component& c) {
    ForEachStepTemplate(c.body, [&](const Template& t, TemplateField field) {
      if (stopped_ || t.IsLiteral()) return;
      auto refs = RefsOf(t, IsTemplateField(t, field));
      if (!refs) return;
      for (const auto& r : *refs) {
        const auto& p = r.path;
        const std::string full = r.ToString();
        const SourceLocation loc = At(t, r.offset);
        if (p[0] == "inputs") {
          if (p.size() == 2 && c.Find(p[1])) continue;
          if (p.size() < 2) {
            ErrAt(loc, "'inputs' needs an input name: inputs.<name>");
            continue;
          }
          ErrAt(loc, "unknown input '" + p[1] + "' in '" + full + "'" +
                         (c.inputs.empty() ? "; the component declares no inputs"
                                           : DidYouMean(p[1], c.InputNames()) + "; declared inputs are: " +
                                                 JoinKeys(c.InputNames())));
        } else if (p[0] == "component") {
          if (p.size() != 2 || p[1] != "dir") ErrAt(loc, "'" + full + "' is not a name; write component.dir");
        } else if (p[0] == "pipeline" || p[0] == "run") {
          continue;  // checked in the using pipeline
        } else {
          ErrAt(loc, "a component sees only its inputs: '" + full +
                         "' cannot be used here; declare an input and bind it under 'with:' in the step that uses "
                         "the component");
        }
      }
    });
  }

  // {{ component.dir }} becomes the pipeline-relative {{ pipeline.dir }}/<rel_dir>,
  // and code files become relative to the pipeline's directory. Where the
  // whole rest of a value is a path ("{{ component.dir }}/../x/y.py"), it is
  // written the shortest way from the pipeline's directory
  // (`using_dir_`, absolute): "{{ pipeline.dir }}/y.py" when that is x/.
  void RewriteComponentPaths(StepSpec& s, const std::string& rel_dir) {
    namespace fs = std::filesystem;
    const std::string dir = rel_dir.empty() || rel_dir == "." ? "{{ pipeline.dir }}" : "{{ pipeline.dir }}/" + rel_dir;
    auto rewrite = [&](Template& t) {
      for (size_t at = t.text.find("{{"); at != std::string::npos; at = t.text.find("{{", at + 2)) {
        size_t end = t.text.find("}}", at);
        if (end == std::string::npos) break;
        if (Trim(std::string_view(t.text).substr(at + 2, end - at - 2)) != "component.dir") continue;
        const std::string rest = t.text.substr(end + 2);
        if (!using_dir_.empty() && rest.starts_with("/") && rest.find("{{") == std::string::npos) {
          const fs::path full = (fs::path(using_dir_) / rel_dir / rest.substr(1)).lexically_normal();
          const std::string shortest = full.lexically_relative(using_dir_).string();
          if (!shortest.empty() && shortest != ".") {
            t.text.replace(at, std::string::npos, "{{ pipeline.dir }}/" + shortest);
            break;
          }
        }
        t.text.replace(at, end + 2 - at, dir);
      }
      if (t.text.find("component.dir") != std::string::npos)
        ErrAt(t.loc, "write {{ component.dir }} on its own, e.g. \"{{ component.dir }}/train.py\"");
    };
    for (auto& t : s.command) rewrite(t);
    for (auto& e : s.env)
      if (!e.secret) rewrite(e.value);
    if (s.workdir) rewrite(*s.workdir);
    for (auto& f : s.code) {
      if (!fs::path(f).is_relative()) continue;
      f = using_dir_.empty() ? (fs::path(rel_dir) / f).lexically_normal().string()
                             : (fs::path(using_dir_) / rel_dir / f).lexically_normal().lexically_relative(using_dir_).string();
    }
  }

  // Reads and parses the component that `v` (a step's `uses:`) names, once
  // per file; null when it cannot be used (the reasons are reported).
  // Where the file that `uses` (a step's `uses:` or `pipeline:` value `v`,
  // naming a `what`) names is: `shown`, and for a Git source that source with
  // its ref resolved to the commit (`pinned`). False when it cannot be
  // resolved (reported at `v`).
  bool ResolveSource(const YamlNode& v, const std::string& uses, const std::string& what,
                     std::filesystem::path* shown, std::string* pinned) {
    namespace fs = std::filesystem;
    if (!uses.starts_with("git+")) {
      *shown = (fs::path(dir_.empty() ? "." : dir_) / uses).lexically_normal();
      return true;
    }
    auto source = ParseGitSource(uses);
    if (!source) {
      Err(v, "invalid " + what + " source " + source.error().message());
      return false;
    }
    auto& resolved = git_resolved_[uses];
    if (resolved.first.empty()) {
      auto checkout = FetchGitSource(*source, DefaultGitCacheDir());
      if (!checkout) {
        Err(v, "cannot use " + what + " '" + uses + "': " + checkout.error().message());
        git_resolved_.erase(uses);
        return false;
      }
      GitSource at_commit = *source;
      at_commit.ref = checkout->commit;
      resolved = {(fs::path(checkout->dir) / source->path).lexically_normal().string(), at_commit.ToString()};
    }
    *shown = resolved.first;
    *pinned = resolved.second;
    return true;
  }

  // The text of the `what` file (a component, a sub-pipeline) that `uses`,
  // the value `v` of the step's `key`, names and ResolveSource found at
  // `shown`; nullopt when it cannot be read (reported at `v`).
  std::optional<std::string> ReadUsedFile(const YamlNode& v, const std::string& uses, const std::string& what,
                                          const std::string& key, const std::filesystem::path& shown,
                                          const std::string& pinned) {
    std::ifstream in(shown, std::ios::binary);
    if (!in || std::filesystem::is_directory(shown)) {
      Err(v, "cannot read " + what + " file '" + uses + "' (looked for " + shown.string() +
                 "): " + (in ? std::string("it is a directory") : std::string(std::strerror(errno))) +
                 (pinned.empty() ? "; '" + key + "' paths are relative to the pipeline file"
                                 : "; the path after '#' is relative to the repository's root"));
      return std::nullopt;
    }
    return ReadUpToLimit(in);
  }

  const Component* UseComponent(const YamlNode& v) {
    auto uses = Str(v, "uses");
    if (!uses) return nullptr;
    namespace fs = std::filesystem;
    fs::path shown;
    std::string pinned;  // a git source as recorded: its ref resolved to the commit
    if (!ResolveSource(v, *uses, "component", &shown, &pinned)) return nullptr;
    auto found = components_.find(shown.string());
    if (found != components_.end()) return found->second.get();
    std::error_code ec;
    const fs::path abs_dir = fs::absolute(dir_.empty() ? "." : dir_, ec).lexically_normal();
    const fs::path abs_file = fs::absolute(shown, ec).lexically_normal();
    if (!OutsideChain(v, abs_file.string(), shown.string(), "component")) return nullptr;
    if (components_.size() >= kMaxComponents) {
      Err(v, "more than " + WithThousands(kMaxComponents) + " component files in one pipeline");
      return nullptr;
    }
    auto& slot = components_[shown.string()];
    auto read = ReadUsedFile(v, *uses, "component", "uses", shown, pinned);
    if (!read) return nullptr;
    std::string text = std::move(*read);
    std::string rel_dir = abs_file.parent_path().lexically_relative(abs_dir).string();
    Loader sub(text, shown.string(), shown.parent_path().string(), ops_, parse_cache_);
    sub.chain_ = Chain();
    sub.chain_.push_back({abs_file.string(), shown.string()});
    std::vector<Diagnostic> found_diags;
    sub.using_dir_ = abs_dir.string();
    auto c = sub.RunComponent(base_, rel_dir, &found_diags);
    for (auto& d : found_diags) AddDiag(std::move(d.loc), d.severity, std::move(d.message));
    if (!c) {
      Err(v, "component '" + *uses + "' has errors (reported above); fix them first");
      return nullptr;
    }
    c->uses = abs_file.lexically_relative(abs_dir).string();
    c->source = pinned.empty() ? c->uses : pinned;
    if (c->graph) {
      c->graph->uses = c->uses;
      c->graph->source = c->source;
      c->graph->rel_dir = rel_dir;
    }
    slot = std::make_unique<Component>(std::move(*c));
    return slot.get();
  }

  // What a step's `with:` binds: the inputs of a component, or the params
  // of a sub-pipeline or of a component graph.
  struct BindTarget {
    std::string what;  // "component <file>" or "sub-pipeline <file>"
    std::string noun;  // "input" or "param"
    const std::vector<ComponentInput>* inputs;
    // The bound values are substituted into the inner steps' expressions
    // (a sub-pipeline, a component graph): each must be a literal or one
    // {{ expression }}, and defaults are left to the expansion.
    bool substituted = false;
    bool artifact_is_string = false;  // an artifact binds to a string param (its path)
  };

  // Binds `target`'s inputs to the step's `with:` values, checking each
  // against its declared type, into the step's inputs (kept there until the
  // expansion for a substituted target, so that the checks of references
  // and dependencies see them). `at` is where a missing input is reported
  // when there is no `with:`.
  void BindWith(StepSpec& s, const BindTarget& target, const YamlNode* with, const YamlNode& at) {
    const std::vector<ComponentInput>& inputs = *target.inputs;
    auto find = [&](const std::string& name) -> const ComponentInput* {
      for (const auto& in : inputs)
        if (in.name == name) return &in;
      return nullptr;
    };
    Keys names;
    for (const auto& in : inputs) names.push_back(in.name);
    std::unordered_set<std::string> bound;
    if (with && ExpectMap(*with, "with")) {
      for (size_t i = 0; i + 1 < with->children.size(); i += 2) {
        const YamlNode& key = N(with->children[i]);
        const YamlNode& val = N(with->children[i + 1]);
        if (!key.IsScalar()) continue;
        const ComponentInput* in = find(key.value);
        if (!in) {
          Err(key, target.what + " has no " + target.noun + " '" + key.value + "'" +
                       (names.empty() ? "; it declares no " + target.noun + "s"
                                      : DidYouMean(key.value, names) + "; its " + target.noun + "s are: " +
                                            JoinKeys(names)));
          continue;
        }
        bound.insert(key.value);
        std::optional<Template> t;
        if (val.IsSequence()) t = Template{ToJson(val).dump(), Loc(val)};
        else t = Tmpl(val, "with." + key.value);
        if (!t) continue;
        if (target.substituted && !t->IsLiteral() && !IsSingleExpression(t->text)) {
          Err(val, "bind " + target.noun + " '" + key.value + "' of " + target.what +
                       " to a literal or to one {{ expression }}, got \"" + t->text + "\"");
          continue;
        }
        CheckBinding(target, *in, val, *t);
        s.inputs[key.value] = std::move(*t);
      }
    }
    for (const auto& in : inputs) {
      if (bound.count(in.name)) continue;
      if (in.default_value) {
        if (target.substituted) continue;
        const Json& d = *in.default_value;
        s.inputs[in.name] = Template{d.is_string() ? d.get<std::string>() : d.dump(), in.loc};
        continue;
      }
      Err(with ? *with : at, target.what + " needs " + target.noun + " '" + in.name + "' (" + in.loc.ToString() +
                                 "); bind it under 'with:'");
      // Reported once, here, not at each use in the component's step.
      if (!target.substituted) s.inputs[in.name] = Template{"", in.loc};
    }
  }

  // Records the component with a step that uses it.
  void RecordComponent(StepSpec& s, const Component& c) {
    s.component_file = c.source;
    s.component_digest = c.digest;
    if (std::find(s.code.begin(), s.code.end(), c.uses) == s.code.end()) s.code.push_back(c.uses);
  }

  // What `val` (bound as `t`) gives the input: "int", "number", "bool",
  // "string", "list" or "an artifact"; "" when it cannot be known before the
  // run (an item, an expression).
  std::string BindingType(const YamlNode& val, const Template& t) {
    if (val.IsSequence()) return "list";
    if (t.IsLiteral()) {
      switch (ResolveScalar(val)) {
        case PlainType::kBool: return "bool";
        case PlainType::kInt: return "int";
        case PlainType::kFloat: return "number";
        default: return "string";
      }
    }
    if (!IsSingleExpression(t.text)) return "string";
    auto refs = expr::References(t.text, true);
    if (!refs || refs->size() != 1) return "";
    const std::string_view inner = Trim(Trim(t.text, " \t\r\n").substr(2, Trim(t.text, " \t\r\n").size() - 4));
    const auto& r = refs->front();
    if (inner != r.ToString()) return "";
    const auto& p = r.path;
    if (p[0] == "params" && p.size() == 2) {
      const ParamSpec* param = FindParam(p[1]);
      return param ? ParamTypeName(param->type) : "";
    }
    if (p[0] == "steps" && p.size() == 5 && p[2] == "outputs") {
      if (p[3] == "artifacts") return "an artifact";
      if (p[3] == "params") return "string";
      if (p[3] == "metrics") return "number";
    }
    return "";
  }

  // Reports a binding `val` (as `t`) whose type does not fit input `in`.
  void CheckBinding(const BindTarget& target, const ComponentInput& in, const YamlNode& val, const Template& t) {
    std::string given = BindingType(val, t);
    if (given == "an artifact" && target.artifact_is_string) given = "string";
    if (given.empty()) return;
    const std::string expected = in.artifact ? "an artifact" : ParamTypeName(in.type);
    bool ok = given == expected;
    if (!in.artifact && in.type == ParamType::kNumber) ok = given == "int" || given == "number";
    if (!in.artifact && in.type == ParamType::kString) ok = given != "an artifact" && given != "list";
    if (!ok)
      Err(val, target.noun + " '" + in.name + "' of " + target.what + " (" + in.loc.ToString() + ") expects " +
                   expected + ", got " + given);
  }

  // -- sub-pipelines ----------------------------------------------------------

  // Reads, validates and expands the sub-pipeline that `v` (a step's
  // `pipeline:`) names, once per file; null when it cannot be used (the
  // reasons are reported, in the file where they are).
  const SubPipeline* UseSubPipeline(const YamlNode& v) {
    auto path = Str(v, "pipeline");
    if (!path) return nullptr;
    namespace fs = std::filesystem;
    fs::path shown;
    std::string pinned;
    if (!ResolveSource(v, *path, "sub-pipeline", &shown, &pinned)) return nullptr;
    std::error_code ec;
    const fs::path abs_dir = fs::absolute(dir_.empty() ? "." : dir_, ec).lexically_normal();
    const fs::path abs_file = fs::absolute(shown, ec).lexically_normal();
    if (!OutsideChain(v, abs_file.string(), shown.string(), "sub-pipeline")) return nullptr;
    auto found = subpipelines_.find(abs_file.string());
    if (found != subpipelines_.end()) return found->second.get();
    auto& slot = subpipelines_[abs_file.string()];
    auto text = ReadUsedFile(v, *path, "sub-pipeline", "pipeline", shown, pinned);
    if (!text) return nullptr;
    Loader sub(*text, shown.string(), shown.parent_path().string(), ops_, parse_cache_);
    sub.chain_ = Chain();
    sub.chain_.push_back({abs_file.string(), shown.string()});
    LoadResult r = sub.Run();
    for (auto& d : r.diagnostics) AddDiag(std::move(d.loc), d.severity, std::move(d.message));
    if (!r.spec) {
      Err(v, "sub-pipeline '" + *path + "' has errors (reported above); fix them first");
      return nullptr;
    }
    if (!r.spec->finally_steps.empty()) {
      ErrAt(r.spec->finally_steps.front().loc, "a sub-pipeline cannot have finally steps; put them in the "
                                               "pipeline that runs it");
      return nullptr;
    }
    auto sp = std::make_unique<SubPipeline>();
    sp->spec = std::move(*r.spec);
    sp->file = shown.string();
    sp->uses = abs_file.lexically_relative(abs_dir).string();
    sp->source = pinned.empty() ? sp->uses : pinned;
    sp->rel_dir = abs_file.parent_path().lexically_relative(abs_dir).string();
    sp->artifacts = std::move(sub.out_artifacts_);
    sp->params = std::move(sub.out_params_);
    for (const auto& p : sp->spec.params) sp->inputs.push_back({p.name, false, p.type, p.default_value, p.loc});
    slot = std::move(sp);
    return slot.get();
  }

  // False (reported at `v`, a step's `pipeline:` or `uses:`) when the file
  // at `abs_file` (`shown` in messages), a `what`, is one of the files that
  // run this one, or nests too deep.
  bool OutsideChain(const YamlNode& v, const std::string& abs_file, const std::string& shown,
                    const std::string& what) {
    const std::vector<std::pair<std::string, std::string>> chain = Chain();
    for (size_t i = 0; i < chain.size(); ++i) {
      if (chain[i].first != abs_file) continue;
      std::string cycle;
      for (size_t j = i; j < chain.size(); ++j) cycle += chain[j].second + " -> ";
      Err(v, what + " cycle: " + cycle + shown + "; a pipeline cannot run itself, directly or through other files");
      return false;
    }
    if (chain.size() >= kMaxSubPipelineDepth) {
      Err(v, "sub-pipelines and component graphs nest more than " + std::to_string(kMaxSubPipelineDepth) +
                 " files deep");
      return false;
    }
    return true;
  }

  // The files from the top pipeline down to this one: {absolute, as shown}.
  std::vector<std::pair<std::string, std::string>> Chain() const {
    if (!chain_.empty()) return chain_;
    std::error_code ec;
    return {{std::filesystem::absolute(file_, ec).lexically_normal().string(), file_}};
  }

  // Binds the params of `sp` (a sub-pipeline or a component graph) to the
  // step's `with:` values, and gives the step its declared outputs.
  void BindGroup(StepSpec& s, const SubPipeline& sp, const YamlNode* with, const YamlNode& at) {
    const bool component = sp.kind == "component";
    BindWith(s, {sp.kind + " " + sp.file, component ? "input" : "param", &sp.inputs, true, !component}, with, at);
    CheckSecretParams(s, sp, with, at);
    for (const auto& [name, from] : sp.artifacts) {
      ArtifactOutputSpec a;
      a.name = name;
      if (const StepSpec* inner = sp.spec.FindStep(from.first))
        for (const auto& o : inner->output_artifacts)
          if (o.name == from.second) a.type = o.type;
      s.output_artifacts.push_back(a);
    }
    for (const auto& [name, from] : sp.params) s.output_params.push_back({name, "", {}});
    sub_uses_[s.name] = &sp;
  }

  // A param that sub-pipeline `sp` declares secret is bound to a secret
  // param of this pipeline: the expansion puts the binding where the param
  // was, and only this pipeline's secret params are masked and redacted.
  void CheckSecretParams(const StepSpec& s, const SubPipeline& sp, const YamlNode* with, const YamlNode& at) {
    for (const auto& p : sp.spec.params) {
      if (!p.secret) continue;
      auto it = s.inputs.find(p.name);
      bool ok = false;
      if (it != s.inputs.end() && !it->second.IsLiteral() && IsSingleExpression(it->second.text)) {
        auto refs = expr::References(it->second.text, true);
        const ParamSpec* from = refs && refs->size() == 1 && refs->front().path.size() == 2 &&
                                        refs->front().path[0] == "params"
                                    ? FindParam(refs->front().path[1])
                                    : nullptr;
        ok = from && from->secret;
      }
      if (ok) continue;
      const YamlNode* val = with && with->IsMap() ? ValueOf(*with, p.name) : nullptr;
      Err(val ? *val : with ? *with : at,
          "param '" + p.name + "' of sub-pipeline " + sp.file + " (" + p.loc.ToString() +
              ") is secret: bind it to a secret param of this pipeline ({{ params.<name> }} declared with "
              "secret: true), so that its value stays masked");
    }
  }

  // `outputs:` of a pipeline used as a sub-pipeline: each a single
  // reference to one of its steps' outputs of the same kind.
  void ParsePipelineOutputs(const YamlNode& n) {
    if (!ExpectMap(n, "outputs")) return;
    Entries(n, kPipelineOutputKeys, "the pipeline's outputs", [&](const std::string& k, const YamlNode&,
                                                                   const YamlNode& v) {
      if (!ExpectMap(v, "outputs." + k)) return;
      for (size_t i = 0; i + 1 < v.children.size(); i += 2) {
        const YamlNode& key = N(v.children[i]);
        const YamlNode& val = N(v.children[i + 1]);
        if (!key.IsScalar()) continue;
        auto t = Tmpl(val, "outputs." + k + "." + key.value);
        if (!t) continue;
        auto refs = IsSingleExpression(t->text) ? RefsOf(*t, true) : std::nullopt;
        const std::string shape = "{{ steps.<step>.outputs." + k + ".<name> }}";
        if (!refs || refs->size() != 1 || refs->front().path.size() != 5 || refs->front().path[0] != "steps" ||
            refs->front().path[2] != "outputs" || refs->front().path[3] != k) {
          Err(val, "output '" + key.value + "' must be one reference " + shape + ", got \"" + t->text + "\"");
          continue;
        }
        const auto& r = refs->front();
        StepSpec none;
        StepInfo info;
        const size_t before = diags_.size();
        CheckReference(all_.size(), none, info, *t, TemplateField::kCommand, r);
        if (diags_.size() != before) continue;
        (k == "artifacts" ? out_artifacts_ : out_params_)[key.value] = {r.path[1], r.path[4]};
      }
    });
  }

  // Replaces each step that runs a sub-pipeline by the sub-pipeline's steps,
  // named "<step>/<inner step>", and points the references to its outputs
  // and its name at them.
  void ExpandSubPipelines() {
    if (sub_uses_.empty()) return;
    std::map<std::string, std::vector<std::string>> inner_names;
    for (const auto& [name, sp] : sub_uses_)
      for (const auto& t : sp->spec.steps) inner_names[name].push_back(name + "/" + t.name);
    std::vector<StepSpec> out;
    for (auto& s : spec_.steps) {
      auto it = sub_uses_.find(s.name);
      if (it == sub_uses_.end()) out.push_back(std::move(s));
      else ExpandSubPipeline(s, *it->second, out);
    }
    // Inner steps too: a binding may read another sub-pipeline's outputs.
    for (auto& s : out) RewriteUsesOfSubPipelines(s, inner_names);
    for (auto& s : spec_.finally_steps) RewriteUsesOfSubPipelines(s, inner_names);
    spec_.steps = std::move(out);
    // This file's own outputs may come from a step that ran a sub-pipeline.
    for (auto* outs : {&out_artifacts_, &out_params_}) {
      for (auto& [name, from] : *outs) {
        auto it = sub_uses_.find(from.first);
        if (it == sub_uses_.end()) continue;
        const auto& inner = outs == &out_artifacts_ ? it->second->artifacts : it->second->params;
        auto o = inner.find(from.second);
        if (o != inner.end()) from = {from.first + "/" + o->second.first, o->second.second};
      }
    }
  }

  // `steps.<sub>.outputs.<kind>.<name>` -> the inner step's output, and
  // `depends: [<sub>]` -> its steps.
  void RewriteUsesOfSubPipelines(StepSpec& s, const std::map<std::string, std::vector<std::string>>& inner_names) {
    std::vector<std::string> depends;
    std::vector<SourceLocation> depends_loc;
    for (size_t d = 0; d < s.depends.size(); ++d) {
      auto it = inner_names.find(s.depends[d]);
      for (const auto& n : it == inner_names.end() ? std::vector<std::string>{s.depends[d]} : it->second) {
        depends.push_back(n);
        depends_loc.push_back(s.depends_loc[d]);
      }
    }
    s.depends = std::move(depends);
    s.depends_loc = std::move(depends_loc);
    ForEachMutableTemplate(s, [&](Template& t, bool is_template) {
      RewriteReferences(t, is_template, [&](const expr::Reference& r) -> std::optional<std::string> {
        if (r.path.size() < 2 || r.path[0] != "steps") return std::nullopt;
        auto it = sub_uses_.find(r.path[1]);
        if (it == sub_uses_.end()) return std::nullopt;
        const SubPipeline& sp = *it->second;
        const auto& outs = r.path.size() == 5 && r.path[3] == "artifacts" ? sp.artifacts : sp.params;
        auto o = r.path.size() == 5 && r.path[2] == "outputs" ? outs.find(r.path[4]) : outs.end();
        if (o == outs.end()) {
          ErrAt(At(t, r.offset), "step '" + r.path[1] + "' runs a " + GroupName(sp.kind) +
                                     ": use its declared outputs (steps." +
                                     r.path[1] + ".outputs.<artifacts|params>.<name>), not '" + r.ToString() + "'");
          return std::nullopt;
        }
        return "steps." + r.path[1] + "/" + o->second.first + ".outputs." + r.path[3] + "." + o->second.second;
      });
    });
  }

  // Appends the steps of `sp`, run by step `using_step`, to `out`.
  void ExpandSubPipeline(const StepSpec& using_step, const SubPipeline& sp, std::vector<StepSpec>& out) {
    namespace fs = std::filesystem;
    const std::string& pre = using_step.name;
    // Param name -> the expression text that replaces `params.<name>`.
    std::map<std::string, std::string> bound;
    for (const auto& p : sp.spec.params) {
      auto it = using_step.inputs.find(p.name);
      if (it == using_step.inputs.end()) {
        if (p.default_value) bound[p.name] = ExpressionLiteral(*p.default_value);
        continue;
      }
      const Template& t = it->second;
      if (t.IsLiteral()) {
        Json v = Json::parse(t.text, nullptr, false);
        bound[p.name] = ExpressionLiteral(p.type == ParamType::kString || v.is_discarded() ? Json(t.text) : v);
      } else {
        std::string_view e = Trim(t.text, " \t\r\n");
        const std::string inner(Trim(e.substr(2, e.size() - 4)));
        // A name stays a name (what Argo's compiler can substitute); an
        // expression is parenthesised.
        auto refs = expr::References(inner, false);
        const bool name = refs && refs->size() == 1 && refs->front().ToString() == inner;
        bound[p.name] = name ? inner : "(" + inner + ")";
      }
    }
    auto relative = [&](const std::string& f) {
      if (f.empty() || f.starts_with("git+") || fs::path(f).is_absolute()) return f;
      return (fs::path(sp.rel_dir) / f).lexically_normal().string();
    };
    const std::string dir = sp.rel_dir.empty() || sp.rel_dir == "." ? "{{ pipeline.dir }}"
                                                                    : "{{ pipeline.dir }}/" + sp.rel_dir;
    for (StepSpec t : sp.spec.steps) {
      t.name = pre + "/" + t.name;
      ForEachMutableTemplate(t, [&](Template& tmpl, bool is_template) {
        for (size_t at = tmpl.text.find("{{"); at != std::string::npos; at = tmpl.text.find("{{", at + 2)) {
          size_t end = tmpl.text.find("}}", at);
          if (end == std::string::npos) break;
          if (Trim(std::string_view(tmpl.text).substr(at + 2, end - at - 2)) == "pipeline.dir")
            tmpl.text.replace(at, end + 2 - at, dir);
        }
        RewriteReferences(tmpl, is_template, [&](const expr::Reference& r) -> std::optional<std::string> {
          if (r.path.size() >= 2 && r.path[0] == "steps") return "steps." + pre + "/" + r.path[1];
          if (r.path.size() >= 2 && r.path[0] == "params") {
            auto b = bound.find(r.path[1]);
            if (b != bound.end()) return b->second;
          }
          return std::nullopt;
        }, /*prefix_only=*/true);
      });
      for (auto& d : t.depends) d = pre + "/" + d;
      for (size_t d = 0; d < using_step.depends.size(); ++d) {
        t.depends.push_back(using_step.depends[d]);
        t.depends_loc.push_back(using_step.depends_loc[d]);
      }
      for (auto& f : t.code) f = relative(f);
      if (std::find(t.code.begin(), t.code.end(), sp.uses) == t.code.end()) t.code.push_back(sp.uses);
      if (!t.component_file.empty()) {
        t.component_file = RecordedSource(sp, t.component_file, relative);
      } else if (!sp.digest.empty()) {
        // A component graph's own step: recorded with the component, as a
        // one-step component's step is.
        t.component_file = sp.source;
        t.component_digest = sp.digest;
      }
      if (using_step.when) {
        // `when:` on the using step decides for the whole group: each inner
        // step runs only when it holds (and its own `when:` too).
        if (!t.when) {
          t.when = using_step.when;
        } else {
          auto inner = [](const Template& w) {  // a bare expression, or one {{ expression }}
            std::string_view e = Trim(w.text, " \t\r\n");
            if (!w.IsLiteral()) e = Trim(e.substr(2, e.size() - 4));
            return "(" + std::string(e) + ")";
          };
          t.when = Template{"{{ " + inner(*using_step.when) + " && " + inner(*t.when) + " }}", using_step.when->loc};
        }
      }
      const std::string group = ForeachGroup(t);
      if (using_step.foreach) {
        if (t.foreach || !group.empty()) {
          ErrAt(using_step.foreach->loc, "step '" + t.name + "' of " + sp.kind + " " + sp.file + " (" +
                                             t.loc.ToString() + ") has a foreach of its own; a " + GroupName(sp.kind) +
                                             " run with foreach cannot hold foreach steps");
          return;
        }
        t.foreach = using_step.foreach;
        t.foreach->group = pre;
      } else if (!group.empty()) {
        t.foreach->group = pre + "/" + group;
      }
      out.push_back(std::move(t));
    }
  }

  // How a step of `sp` records the component file `f` it uses (relative to
  // the directory of `sp`): the same Git source at the same commit when `sp`
  // came from Git, else `relative(f)` (relative to this pipeline's directory).
  static std::string RecordedSource(const SubPipeline& sp, const std::string& f,
                                    const std::function<std::string(const std::string&)>& relative) {
    if (f.starts_with("git+") || std::filesystem::path(f).is_absolute() || !sp.source.starts_with("git+"))
      return relative(f);
    auto git = ParseGitSource(sp.source);
    if (!git) return relative(f);
    git->path = (std::filesystem::path(git->path).parent_path() / f).lexically_normal().string();
    return git->ToString();
  }

  // `v` as an expression literal: 'text', 12, true, [..].
  static std::string ExpressionLiteral(const Json& v) {
    if (!v.is_string()) return v.dump();
    std::string out = "'";
    for (char c : v.get<std::string>()) {
      if (c == '\'' || c == '\\') out += '\\';
      out += c;
    }
    return out + "'";
  }

  // Replaces the references of `t` for which `fn` gives a replacement:
  // the whole dotted name, or with `prefix_only` its first two parts
  // ("steps.x", "params.p"). A reference written with spaces inside the
  // name is left as it is.
  void RewriteReferences(Template& t, bool is_template,
                         const std::function<std::optional<std::string>(const expr::Reference&)>& fn,
                         bool prefix_only = false) {
    if (t.IsLiteral() && is_template) return;
    auto refs = expr::References(t.text, is_template);
    if (!refs) return;
    for (auto it = refs->rbegin(); it != refs->rend(); ++it) {
      const expr::Reference& r = *it;
      std::string name = prefix_only && r.path.size() >= 2 ? r.path[0] + "." + r.path[1] : r.ToString();
      if (t.text.compare(r.offset, name.size(), name) != 0) continue;
      if (auto with = fn(r)) t.text.replace(r.offset, name.size(), *with);
    }
  }

  // The operator's own checks of its config section, each reported at the
  // value it names (the section when it names none).
  void CheckOperatorConfig(const Operator& op, const StepSpec& s, const YamlNode& section) {
    for (const ConfigProblem& p : op.CheckConfig(s)) {
      const YamlNode* at = &section;
      for (const std::string& part : p.path) {
        const YamlNode* next = nullptr;
        if (at->IsMap()) {
          for (size_t i = 0; i + 1 < at->children.size(); i += 2)
            if (N(at->children[i]).IsScalar() && N(at->children[i]).value == part) next = &N(at->children[i + 1]);
        } else if (at->IsSequence() && !part.empty() && part.size() < 10 &&
                   std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          size_t index = std::stoul(part);
          if (index < at->children.size()) next = &N(at->children[index]);
        }
        if (next == nullptr) break;
        at = next;
      }
      Err(*at, p.message);
    }
  }

  // One field of a step, or of `defaults` when info is null.
  void StepField(StepSpec& s, const std::string& k, const YamlNode& v, StepInfo* info, const std::string& where) {
    if (k == "type") {
      if (auto t = Enum(v, "step type", step_types_)) s.type = *t;
    } else if (k == "command") {
      if (v.IsScalar() && !IsYamlNull(v.value)) {
        Err(v, "'command' must be a list (argv), e.g. [python3, train.py], got a string; it is never run "
               "through a shell");
        return;
      }
      if (!ExpectSeq(v, "command")) return;
      if (v.children.empty()) Err(v, "'command' is empty; give the program and its arguments");
      s.command.clear();
      for (uint32_t c : v.children)
        if (auto t = Tmpl(N(c), "command item")) s.command.push_back(std::move(*t));
    } else if (k == "env") {
      ParseEnv(s, v);
    } else if (k == "workdir") {
      if (auto t = Tmpl(v, "workdir")) s.workdir = std::move(*t);
    } else if (k == "image") {
      if (auto str = Str(v, "image")) {
        if (str->find("{{") != std::string::npos) Err(v, "'image' cannot contain templates; write the image name");
        s.image = *str;
      }
    } else if (k == "executor") {
      if (auto e = Enum(v, "executor", kExecutors)) s.executor = *e;
    } else if (k == "code") {
      s.code = StrList(v, "code", true);
      code_nodes_.push_back(&v);
    } else if (k == "depends") {
      s.depends.clear();
      s.depends_loc.clear();
      if (v.IsScalar()) {
        if (auto d = Str(v, "depends")) {
          s.depends.push_back(*d);
          s.depends_loc.push_back(Loc(v));
        }
        return;
      }
      if (!ExpectSeq(v, "depends")) return;
      std::unordered_set<std::string> listed;
      for (uint32_t c : v.children) {
        if (auto d = Str(N(c), "depends item")) {
          if (!listed.insert(*d).second) {
            Warn(N(c), "'" + *d + "' is listed twice in depends");
            continue;
          }
          s.depends.push_back(*d);
          s.depends_loc.push_back(Loc(N(c)));
        }
      }
    } else if (k == "inputs") {
      if (!ExpectMap(v, "inputs")) return;
      for (size_t i = 0; i + 1 < v.children.size(); i += 2) {
        const YamlNode& key = N(v.children[i]);
        if (!key.IsScalar()) continue;
        if (!IsIdentifier(key.value))
          Err(key, "invalid input name '" + key.value + "': use letters, digits and '_' (it is used as inputs." +
                       key.value + ")");
        if (auto t = Tmpl(N(v.children[i + 1]), "input " + key.value)) s.inputs[key.value] = std::move(*t);
      }
    } else if (k == "when") {
      if (auto t = Tmpl(v, "when")) s.when = std::move(*t);
    } else if (k == "ifUpstreamSkipped") {
      if (auto e = Enum(v, "ifUpstreamSkipped", kUpstreamSkipped))
        s.upstream_skipped = *e == "run" ? UpstreamSkippedPolicy::kRun : UpstreamSkippedPolicy::kSkip;
    } else if (k == "foreach") {
      if (info) info->foreach_written = true;
      ParseForeach(s, v);
    } else if (k == "retries") {
      ParseRetries(s, v);
    } else if (k == "timeout") {
      if (auto d = Dur(v, "timeout")) {
        if (d->count() <= 0) Err(v, "'timeout' must be longer than 0");
        else s.timeout = *d;
      }
    } else if (k == "pendingTimeout") {
      if (auto d = Dur(v, "pendingTimeout")) {
        if (d->count() <= 0) Err(v, "'pendingTimeout' must be longer than 0");
        else s.pending_timeout = *d;
      }
    } else if (k == "resources") {
      ParseResources(s, v);
    } else if (k == "priority") {
      if (auto p = Int(v, "priority")) s.priority = static_cast<int>(*p);
    } else if (k == "cache") {
      ParseCache(s, v, info);
    } else if (k == "outputs") {
      ParseOutputs(s, v);
    }
  }

  void ParseEnv(StepSpec& s, const YamlNode& v) {
    if (!ExpectMap(v, "env")) return;
    // A step's value overrides the default's; the index keeps that linear.
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < s.env.size(); ++i) index.emplace(s.env[i].name, i);
    for (size_t i = 0; i + 1 < v.children.size(); i += 2) {
      const YamlNode& key = N(v.children[i]);
      const YamlNode& val = N(v.children[i + 1]);
      if (!key.IsScalar()) continue;
      EnvVarSpec e;
      e.name = key.value;
      e.loc = Loc(key);
      if (!IsIdentifier(e.name))
        Err(key, "invalid environment variable name '" + e.name + "': use letters, digits and '_'");
      if (val.IsMap()) {
        bool has_secret = false;
        Entries(val, kEnvValueKeys, "env '" + e.name + "'", [&](const std::string&, const YamlNode&,
                                                                 const YamlNode& sv) {
          has_secret = true;
          if (!ExpectMap(sv, "secret")) return;
          SecretRef ref;
          bool has_name = false, has_key = false;
          Entries(sv, kSecretKeys, "secret", [&](const std::string& sk, const YamlNode&, const YamlNode& x) {
            if (auto str = Str(x, "secret." + sk)) {
              (sk == "name" ? ref.name : ref.key) = *str;
              (sk == "name" ? has_name : has_key) = true;
            }
          });
          if (!has_name) Err(sv, "secret of env '" + e.name + "' is missing 'name'");
          if (!has_key) Err(sv, "secret of env '" + e.name + "' is missing 'key'");
          e.secret = ref;
        });
        if (!has_secret && val.children.empty())
          Err(val, "env '" + e.name + "' must be a string or {secret: {name, key}}");
      } else if (val.IsScalar() && (val.quoted || !IsYamlNull(val.value))) {
        e.value = Template{val.value, TemplateLoc(val)};
      } else {
        Err(val, "env '" + e.name + "' must be a string or {secret: {name, key}}, got " + Describe(val) +
                     (val.IsNull() || IsYamlNull(val.value) ? "; write \"\" for an empty value" : ""));
        continue;
      }
      auto [it, inserted] = index.emplace(e.name, s.env.size());
      if (inserted) s.env.push_back(std::move(e));
      else s.env[it->second] = std::move(e);
    }
  }

  // The items of a literal foreach list are values, not templates (docs/
  // dsl.md): a "{{ ... }}" in one (or in a field of one) would reach the
  // step as written, so it is an error that says what to write instead.
  void RejectItemTemplate(const YamlNode& n, size_t index) {
    if (n.IsScalar() && n.value.find("{{") != std::string::npos) {
      Err(n, "foreach item " + std::to_string(index) + " holds a template ('" + n.value +
                 "'); the items of a literal list are not rendered: write the value, or "
                 "make the whole list one template, e.g. foreach: \"{{ params.models }}\"");
      return;
    }
    for (size_t i = n.IsMap() ? 1 : 0; i < n.children.size(); i += n.IsMap() ? 2 : 1)
      RejectItemTemplate(N(n.children[i]), index);
  }

  void ParseForeach(StepSpec& s, const YamlNode& v) {
    ForEachSpec f;
    f.loc = Loc(v);
    if (v.IsSequence()) {
      f.kind = ForEachSpec::Kind::kItems;
      for (uint32_t c : v.children) {
        f.items.push_back(ToJson(N(c)));
        RejectItemTemplate(N(c), f.items.size() - 1);
      }
      if (f.items.empty()) Warn(v, "'foreach' over an empty list: the step will run no instances");
    } else if (v.IsMap()) {
      f.kind = ForEachSpec::Kind::kRange;
      bool has_range = false;
      // Range bounds stay within +-2^53 (exact in any JSON reader), so that
      // no arithmetic on them overflows, and a range has at most
      // kMaxRangeInstances values.
      auto bounded = [&](const YamlNode& x, const std::string& what, std::optional<int64_t> val) {
        if (val && (*val > kMaxRangeValue || *val < -kMaxRangeValue)) {
          Err(x, "'" + what + "' must be between -" + std::to_string(kMaxRangeValue) + " and " +
                     std::to_string(kMaxRangeValue) + " (2^53), got " + std::to_string(*val));
          return std::optional<int64_t>();
        }
        return val;
      };
      Entries(v, kForeachKeys, "foreach", [&](const std::string&, const YamlNode&, const YamlNode& r) {
        has_range = true;
        if (r.IsScalar()) {
          if (auto e = bounded(r, "range", Int(r, "range"))) {
            f.range_end = *e;
            CheckRangeSize(f, r);
          }
          return;
        }
        if (!ExpectMap(r, "range")) return;
        bool has_end = false;
        bool bad = false;
        Entries(r, kRangeKeys, "range", [&](const std::string& rk, const YamlNode&, const YamlNode& x) {
          if (rk == "end") has_end = true;  // an invalid one is reported as such, not as missing
          auto val = bounded(x, "range." + rk, Int(x, "range." + rk));
          bad = bad || !val;
          if (!val) return;
          if (rk == "start") f.range_start = *val;
          else if (rk == "end") {
            f.range_end = *val;
          } else {
            if (*val == 0) Err(x, "'range.step' cannot be 0");
            else f.range_step = *val;
          }
        });
        if (!has_end) {
          Err(r, "'range' is missing 'end' (the range is [start, end))");
          return;
        }
        if (bad) return;
        if ((f.range_step > 0 && f.range_start >= f.range_end) || (f.range_step < 0 && f.range_start <= f.range_end))
          Warn(v, "'foreach' range is empty: the step will run no instances");
        else
          CheckRangeSize(f, r);
      });
      if (!has_range)
        Err(v, "'foreach' as a map needs 'range', e.g. {range: {start: 0, end: 3}}");
    } else if (v.IsScalar() && v.value.find("{{") != std::string::npos) {
      f.kind = ForEachSpec::Kind::kExpression;
      f.expression = Template{v.value, TemplateLoc(v)};
    } else {
      Err(v, "'foreach' must be a list, a range or a template that yields a list (\"{{ params.models }}\"), got " +
                 Describe(v));
      return;
    }
    s.foreach = std::move(f);
  }

  // A range of more than kMaxRangeInstances values is an error at `r`.
  // Bounds are within +-2^53, so the arithmetic cannot overflow.
  void CheckRangeSize(const ForEachSpec& f, const YamlNode& r) {
    const int64_t step = f.range_step == 0 ? 1 : f.range_step;
    const int64_t span = step > 0 ? f.range_end - f.range_start : f.range_start - f.range_end;
    const int64_t magnitude = step > 0 ? step : -step;
    const int64_t count = span <= 0 ? 0 : (span + magnitude - 1) / magnitude;
    if (count > static_cast<int64_t>(kMaxRangeInstances))
      Err(r, "'foreach' range has " + WithThousands(static_cast<uint64_t>(count)) + " values; a range may have at most " +
                 WithThousands(kMaxRangeInstances));
  }

  void ParseRetries(StepSpec& s, const YamlNode& v) {
    s.retries.loc = Loc(v);
    if (v.IsScalar()) {
      if (auto l = Int(v, "retries")) {
        if (*l < 0) Err(v, "'retries' must be 0 or more, got " + std::to_string(*l));
        else s.retries.limit = static_cast<int>(*l);
      }
      return;
    }
    if (!ExpectMap(v, "retries")) return;
    const YamlNode* backoff_node = nullptr;
    const YamlNode* max_node = nullptr;
    Entries(v, kRetryKeys, "retries", [&](const std::string& k, const YamlNode&, const YamlNode& x) {
      if (k == "limit") {
        if (auto l = Int(x, "retries.limit")) {
          if (*l < 0) Err(x, "'retries.limit' must be 0 or more, got " + std::to_string(*l));
          else s.retries.limit = static_cast<int>(*l);
        }
      } else if (k == "backoff") {
        backoff_node = &x;
        if (auto d = Dur(x, "retries.backoff")) s.retries.backoff = *d;
      } else if (k == "factor") {
        if (auto f = Number(x, "retries.factor")) {
          if (*f < 1) Err(x, "'retries.factor' must be 1 or more, got " + x.value);
          else s.retries.factor = *f;
        }
      } else if (k == "maxBackoff") {
        max_node = &x;
        if (auto d = Dur(x, "retries.maxBackoff")) s.retries.max_backoff = *d;
      } else if (k == "retryOn") {
        if (auto e = Enum(x, "retryOn", kRetryOn)) {
          if (*e == "Always") s.retries.retry_on = RetryOn::kAlways;
          else if (*e == "OnFailure" || *e == "Failure") s.retries.retry_on = RetryOn::kOnFailure;
          else s.retries.retry_on = RetryOn::kOnError;
        }
      }
    });
    if (backoff_node && max_node && s.retries.max_backoff && *s.retries.max_backoff < s.retries.backoff)
      Warn(*max_node, "'retries.maxBackoff' is shorter than 'retries.backoff'; every wait will be maxBackoff");
  }

  void ParseResources(StepSpec& s, const YamlNode& v) {
    if (!ExpectMap(v, "resources")) return;
    Entries(v, kResourceKeys, "resources", [&](const std::string& k, const YamlNode&, const YamlNode& x) {
      if (k == "cpu") {
        if (!x.IsScalar() || (!x.quoted && IsYamlNull(x.value))) {
          Err(x, "'resources.cpu' must be a quantity such as 1, 0.5 or \"500m\", got " + Describe(x));
          return;
        }
        auto c = ParseCpu(x.value);
        if (!c) Err(x, c.error().message());
        else s.resources.cpu_millis = *c;
      } else if (k == "memory") {
        if (!x.IsScalar() || (!x.quoted && IsYamlNull(x.value))) {
          Err(x, "'resources.memory' must be a quantity such as 512Mi or 1Gi, got " + Describe(x));
          return;
        }
        auto m = ParseMemory(x.value);
        if (!m) Err(x, m.error().message());
        else s.resources.memory_bytes = *m;
      } else if (k == "gpu") {
        if (auto g = Int(x, "resources.gpu")) {
          if (*g < 0) Err(x, "'resources.gpu' must be 0 or more, got " + std::to_string(*g));
          else s.resources.gpu = *g;
        }
      } else if (k == "nodeSelector") {
        if (!ExpectMap(x, "resources.nodeSelector")) return;
        s.resources.node_selector.clear();
        for (size_t i = 0; i + 1 < x.children.size(); i += 2)
          if (auto val = Str(N(x.children[i + 1]), "nodeSelector value"))
            s.resources.node_selector[N(x.children[i]).value] = *val;
      } else if (k == "tolerations") {
        if (!ExpectSeq(x, "resources.tolerations")) return;
        s.resources.tolerations.clear();
        for (uint32_t c : x.children) {
          if (!N(c).IsMap()) {
            Err(N(c), "each toleration must be a map (a Kubernetes Toleration), got " + Describe(N(c)));
            continue;
          }
          s.resources.tolerations.push_back(ToJson(N(c)));
        }
      }
    });
  }

  void ParseCache(StepSpec& s, const YamlNode& v, StepInfo* info) {
    s.cache.loc = Loc(v);
    if (v.IsScalar()) {
      if (auto b = Bool(v, "cache")) s.cache.enabled = *b;
      return;
    }
    if (!ExpectMap(v, "cache")) return;
    Entries(v, kCacheKeys, "cache", [&](const std::string& k, const YamlNode&, const YamlNode& x) {
      if (k == "enabled") {
        if (auto b = Bool(x, "cache.enabled")) s.cache.enabled = *b;
      } else if (k == "maxAge") {
        if (auto d = Dur(x, "cache.maxAge")) s.cache.max_age = *d;
      } else if (k == "ignoreInputs") {
        s.cache.ignore_inputs = StrList(x, "cache.ignoreInputs", false);
        if (info) info->ignore_inputs_node = &x;
      } else if (k == "envIgnore") {
        s.cache.env_ignore = StrList(x, "cache.envIgnore", false);
      }
    });
  }

  void ParseOutputs(StepSpec& s, const YamlNode& v) {
    if (!ExpectMap(v, "outputs")) return;
    Entries(v, kOutputKeys, "outputs", [&](const std::string& k, const YamlNode&, const YamlNode& x) {
      if (k == "metrics") {
        if (auto p = Str(x, "outputs.metrics")) {
          CheckOutputPath(x, *p);
          s.metrics_file = *p;
        }
        return;
      }
      if (!ExpectSeq(x, "outputs." + k)) return;
      bool artifacts = k == "artifacts";
      std::unordered_map<std::string, int> seen;
      for (uint32_t c : x.children) {
        const YamlNode& o = N(c);
        if (!o.IsMap()) {
          Err(o, std::string("each output ") + (artifacts ? "artifact" : "parameter") +
                     " must be a map {name, path" + (artifacts ? ", type" : "") + "}, got " + Describe(o));
          continue;
        }
        std::string name, path;
        bool has_name = false, has_path = false;
        ArtifactType type = ArtifactType::kOther;
        Entries(o, artifacts ? kArtifactKeys : kOutParamKeys,
                artifacts ? "an output artifact" : "an output parameter",
                [&](const std::string& ok, const YamlNode&, const YamlNode& y) {
                  if (ok == "name") {
                    if (auto str = Str(y, "name")) {
                      name = *str;
                      has_name = true;
                      if (!IsIdentifier(name))
                        Err(y, "invalid output name '" + name + "': use letters, digits and '_'");
                      auto [it, inserted] = seen.emplace(name, y.line);
                      if (!inserted)
                        Err(y, std::string("duplicate output ") + (artifacts ? "artifact" : "parameter") + " '" +
                                   name + "' (first defined at line " + std::to_string(it->second) + ")");
                    }
                  } else if (ok == "path") {
                    if (auto str = Str(y, "path")) {
                      path = *str;
                      has_path = true;
                      CheckOutputPath(y, path);
                    }
                  } else if (ok == "type") {
                    if (auto t = Enum(y, "artifact type", kArtifactTypes)) {
                      for (int ti = 0; ti < 4; ++ti)
                        if (*t == ArtifactTypeName(static_cast<ArtifactType>(ti))) type = static_cast<ArtifactType>(ti);
                    }
                  }
                });
        if (!has_name) Err(o, std::string("output ") + (artifacts ? "artifact" : "parameter") + " is missing 'name'");
        if (!has_path) Err(o, std::string("output ") + (artifacts ? "artifact" : "parameter") + " is missing 'path'");
        if (artifacts) s.output_artifacts.push_back({name, path, type, Loc(o)});
        else s.output_params.push_back({name, path, Loc(o)});
      }
    });
  }

  void CheckOutputPath(const YamlNode& n, const std::string& path) {
    if (path.empty()) {
      Err(n, "an output path cannot be empty");
    } else if (path.front() == '/') {
      Err(n, "output path '" + path + "' must be relative to the step's working directory");
    } else {
      std::filesystem::path p(path);
      for (const auto& part : p)
        if (part == "..") {
          Err(n, "output path '" + path + "' must stay inside the step's working directory (no '..')");
          break;
        }
    }
  }

  // -- schedule ---------------------------------------------------------------

  void ParseSchedule(const YamlNode& n) {
    if (!ExpectMap(n, "schedule")) return;
    ScheduleSpec sc;
    sc.loc = Loc(n);
    bool has_cron = false;
    Entries(n, kScheduleKeys, "schedule", [&](const std::string& k, const YamlNode&, const YamlNode& v) {
      if (k == "cron") {
        has_cron = true;
        if (v.IsScalar()) {
          if (auto c = Str(v, "cron")) {
            CheckCron(v, *c);
            sc.cron.push_back(*c);
          }
        } else if (ExpectSeq(v, "schedule.cron")) {
          for (uint32_t c : v.children)
            if (auto str = Str(N(c), "cron")) {
              CheckCron(N(c), *str);
              sc.cron.push_back(*str);
            }
        }
      } else if (k == "timezone") {
        if (auto s = Str(v, "timezone")) sc.timezone = *s;
      } else if (k == "concurrencyPolicy") {
        if (auto s = Enum(v, "concurrencyPolicy", kConcurrency)) sc.concurrency_policy = *s;
      } else if (k == "startingDeadline") {
        if (auto d = Dur(v, "startingDeadline")) sc.starting_deadline = *d;
      } else if (k == "catchup") {
        if (auto s = Enum(v, "catchup", kCatchup)) sc.catchup = *s;
      } else if (k == "catchupLimit" || k == "historyLimit") {
        if (auto i = Int(v, k)) {
          if (*i < 0) Err(v, "'" + k + "' must be 0 or more");
          else (k == "catchupLimit" ? sc.catchup_limit : sc.history_limit) = static_cast<int>(*i);
        }
      } else if (k == "params") {
        if (!ExpectMap(v, "schedule.params")) return;
        for (size_t i = 0; i + 1 < v.children.size(); i += 2) {
          const YamlNode& key = N(v.children[i]);
          if (!key.IsScalar()) continue;
          if (!FindParam(key.value)) {
            Err(key, "unknown parameter '" + key.value + "' in schedule.params" +
                         DidYouMean(key.value, ParamNames()));
            continue;
          }
          if (auto t = Tmpl(N(v.children[i + 1]), "schedule.params." + key.value)) {
            CheckTemplateSyntax(*t, true);
            sc.params[key.value] = std::move(*t);
          }
        }
      }
    });
    if (!has_cron) Err(n, "schedule is missing 'cron', e.g. cron: \"0 3 * * *\"");
    spec_.schedule = std::move(sc);
  }

  void CheckCron(const YamlNode& n, const std::string& c) {
    static const Keys kMacros = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"};
    if (c.starts_with("@every ")) {
      auto d = ParseDuration(c.substr(7));
      if (!d || d->count() <= 0) Err(n, "invalid cron '" + c + "': '@every' needs a duration such as 1h");
      return;
    }
    if (c.starts_with("@")) {
      if (!Contains(kMacros, c))
        Err(n, "invalid cron '" + c + "'" +
                   (ClosestMatch(c, kMacros).empty() ? "; macros are: " + JoinKeys(kMacros) : DidYouMean(c, kMacros)));
      return;
    }
    std::istringstream in(c);
    std::string field;
    int fields = 0;
    bool bad_char = false;
    while (in >> field) {
      ++fields;
      for (char ch : field)
        if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '*' || ch == ',' || ch == '-' || ch == '/' ||
              ch == '?'))
          bad_char = true;
    }
    if (fields != 5 || bad_char)
      Err(n, "invalid cron '" + c + "': write 5 fields (minute hour day-of-month month day-of-week), e.g. "
             "\"0 3 * * *\"");
  }

  // -- cross-step checks --------------------------------------------------------

  Keys ParamNames() const {
    Keys out;
    for (const auto& p : spec_.params) out.push_back(p.name);
    return out;
  }

  // Maps `offset` inside template `t` to a file location. Exact when the
  // template is written on one line without escapes; otherwise the
  // template's own location.
  SourceLocation At(const Template& t, size_t offset) {
    SourceLocation loc = t.loc;
    if (offset == 0 || loc.line <= 0) return loc;
    if (line_starts_.empty()) {
      line_starts_.push_back(0);
      for (size_t i = 0; i < text_.size(); ++i)
        if (text_[i] == '\n') line_starts_.push_back(i + 1);
    }
    if (static_cast<size_t>(loc.line) > line_starts_.size()) return loc;
    size_t start = line_starts_[loc.line - 1] + loc.column - 1;
    if (offset <= t.text.size() && start + offset <= text_.size() &&
        text_.compare(start, offset, t.text, 0, offset) == 0)
      loc.column += static_cast<int>(offset);
    return loc;
  }

  // "col N: message" from expr -> the file column; returns the message rest.
  SourceLocation ExprErrorLoc(const Template& t, const std::string& message, std::string* rest) {
    *rest = message;
    if (message.starts_with("col ")) {
      size_t colon = message.find(": ");
      if (colon != std::string::npos) {
        size_t col = std::strtoul(message.c_str() + 4, nullptr, 10);
        *rest = message.substr(colon + 2);
        if (col > 0) return At(t, col - 1);
      }
    }
    return t.loc;
  }

  std::optional<std::vector<expr::Reference>> RefsOf(const Template& t, bool is_template) {
    auto refs = expr::References(t.text, is_template);
    if (!refs) {
      std::string rest;
      SourceLocation loc = ExprErrorLoc(t, refs.error().message(), &rest);
      ErrAt(loc, "invalid expression: " + rest);
      return std::nullopt;
    }
    return std::move(*refs);
  }

  void CheckTemplateSyntax(const Template& t, bool is_template) {
    auto refs = RefsOf(t, is_template);
    if (!refs) return;
    // The scheduler's scope (engine/server/scheduler.h, docs/server.md).
    static const Keys kScheduleFields = {"time", "date", "datetime", "year", "month",
                                         "day",  "hour", "minute",   "unix", "timezone"};
    for (const auto& r : *refs) {
      if (r.path[0] == "params" && r.path.size() == 2 && FindParam(r.path[1])) continue;
      if (r.path[0] == "schedule" && r.path.size() == 2 && Contains(kScheduleFields, r.path[1])) continue;
      if (r.path[0] == "pipeline" && r.path.size() == 2 && r.path[1] == "name") continue;
      ErrAt(At(t, r.offset), "unknown name '" + r.ToString() +
                                 "'; schedule parameters may use params.NAME, pipeline.name and schedule.{" +
                                 JoinKeys(kScheduleFields) + "}");
    }
  }

  // True when `text` is one {{ }} with nothing around it.
  static bool IsSingleExpression(std::string_view text) {
    std::string_view t = Trim(text, " \t\r\n");
    if (!t.starts_with("{{") || !t.ends_with("}}")) return false;
    return t.find("{{", 2) == std::string_view::npos;
  }

  void CheckSteps() {
    for (auto& s : spec_.steps) all_.push_back(&s);
    for (auto& s : spec_.finally_steps) all_.push_back(&s);
    std::vector<StepInfo*> infos;
    for (auto& i : step_info_) infos.push_back(&i);
    for (auto& i : finally_info_) infos.push_back(&i);

    // Names: unique across steps and finally.
    index_.reserve(all_.size());
    for (size_t i = 0; i < all_.size(); ++i) {
      if (stopped_) break;
      const StepSpec& s = *all_[i];
      if (s.name.empty()) continue;
      auto [it, inserted] = index_.emplace(s.name, static_cast<int>(i));
      if (!inserted)
        ErrAt(infos[i]->name_loc, "duplicate step name '" + s.name + "' (first defined at line " +
                                      std::to_string(all_[it->second]->loc.line) + ")");
    }

    for (size_t i = 0; i < all_.size(); ++i) {
      if (stopped_) break;
      StepSpec& s = *all_[i];
      StepInfo& info = *infos[i];
      // Explicit dependencies.
      for (size_t d = 0; d < s.depends.size(); ++d) {
        const std::string& dep = s.depends[d];
        const SourceLocation& loc = s.depends_loc[d];
        auto it = index_.find(dep);
        if (it == index_.end()) {
          ErrAt(loc, "unknown step '" + dep + "' in depends" + DidYouMean(dep, StepNames()));
          continue;
        }
        if (!s.is_finally && all_[it->second]->is_finally) {
          ErrAt(loc, "step '" + s.name + "' cannot depend on finally step '" + dep +
                         "'; finally steps run after all other steps");
          continue;
        }
        AddEdge(i, info, it->second);
      }
      // Templates: syntax, names, implicit dependencies.
      ForEachStepTemplate(s, [&](const Template& t, TemplateField field) {
        if (stopped_ || (field != TemplateField::kWhen && t.IsLiteral())) return;
        bool is_template = IsTemplateField(t, field);
        if (field == TemplateField::kWhen && is_template && !IsSingleExpression(t.text)) {
          ErrAt(t.loc, "'when' must be one expression; put the whole condition inside a single {{ }}");
          return;
        }
        if (field == TemplateField::kForeach && !IsSingleExpression(t.text)) {
          ErrAt(t.loc, "'foreach' must be a single {{ expression }} that yields a list, got \"" + t.text + "\"");
          return;
        }
        auto refs = RefsOf(t, is_template);
        if (!refs) return;
        size_t before = diags_.size();
        for (const auto& r : *refs) CheckReference(i, s, info, t, field, r);
        if (field == TemplateField::kForeach && diags_.size() == before) CheckForeachSubject(t, *refs);
      });
    }
    for (size_t i = 0; i < all_.size(); ++i) {
      if (stopped_) break;
      const StepSpec* sp = all_[i];
      const YamlNode* node = infos[i]->ignore_inputs_node;
      if (!node) continue;
      for (size_t c = 0; c < node->children.size(); ++c) {
        const YamlNode& item = N(node->children[c]);
        if (item.IsScalar() && !sp->inputs.count(item.value)) {
          Keys names;
          for (const auto& [k, t] : sp->inputs) names.push_back(k);
          Err(item, "cache.ignoreInputs names '" + item.value + "', which is not an input of step '" + sp->name +
                        "'" + DidYouMean(item.value, names));
        }
      }
    }
    CheckCodeFiles();
    FindCycles(infos);
  }

  // Every step's name, in file order; built once, as all_ is complete
  // before the first call.
  const Keys& StepNames() {
    if (step_names_.size() != all_.size()) {
      step_names_.clear();
      step_names_.reserve(all_.size());
      for (const auto* s : all_) step_names_.push_back(s->name);
    }
    return step_names_;
  }

  // Adds the edge from step `from` (whose info is `info`) to step `to` once.
  // CheckSteps adds all of a step's edges before the next step's, so a stamp
  // per target step tells whether `from` has it already.
  void AddEdge(size_t from, StepInfo& info, int to) {
    if (edge_stamp_.size() < all_.size()) edge_stamp_.assign(all_.size(), 0);
    if (edge_stamp_[to] == from + 1) return;
    edge_stamp_[to] = from + 1;
    info.deps.push_back(to);
  }

  // Checks reference `r` of template `t` of step `s` (all_[index]).
  void CheckReference(size_t index, const StepSpec& s, StepInfo& info, const Template& t, TemplateField field,
                      const expr::Reference& r) {
    const auto& p = r.path;
    const std::string full = r.ToString();
    SourceLocation loc = At(t, r.offset);
    const std::string& root = p[0];
    auto need = [&](size_t len, const std::string& shape) {
      if (p.size() == len) return true;
      ErrAt(loc, "'" + full + "' is not a name; write " + shape);
      return false;
    };
    if (root == "params") {
      if (p.size() < 2) {
        ErrAt(loc, "'params' needs a parameter name: params.<name>");
        return;
      }
      const ParamSpec* param = FindParam(p[1]);
      if (!param && component_mode_) return;  // a component graph's params: reported by ReadComponentInputs
      if (!param) {
        std::string m = ClosestMatch(p[1], ParamNames());
        ErrAt(loc, "unknown parameter '" + p[1] + "' in '" + full + "'" +
                       (m.empty() ? (spec_.params.empty() ? "; the pipeline declares no params"
                                                          : "; declared params are: " + JoinKeys(ParamNames()))
                                  : "; did you mean '" + m + "'?"));
        return;
      }
      if (p.size() > 2) {
        ErrAt(loc, "parameter '" + p[1] + "' is a " + ParamTypeName(param->type) + "; it has no field '" + p[2] + "'");
        return;
      }
      if (field == TemplateField::kForeach && param->type != ParamType::kList)
        ErrAt(loc, "'foreach' over parameter '" + p[1] + "' of type " + ParamTypeName(param->type) +
                       "; a foreach needs a list (declare it with 'type: list')");
      return;
    }
    if (root == "steps") {
      if (p.size() < 2) {
        ErrAt(loc, "'steps' needs a step name: steps.<step>.outputs...");
        return;
      }
      auto it = index_.find(p[1]);
      if (it == index_.end()) {
        ErrAt(loc, "unknown step '" + p[1] + "' in '" + full + "'" + DidYouMean(p[1], StepNames()));
        return;
      }
      const StepSpec& target = *all_[it->second];
      if (&target == &s) {
        ErrAt(loc, "step '" + s.name + "' cannot use its own outputs ('" + full + "')");
        return;
      }
      if (!s.is_finally && target.is_finally) {
        ErrAt(loc, "step '" + s.name + "' cannot use finally step '" + target.name +
                       "'; finally steps run after all other steps");
        return;
      }
      AddEdge(index, info, it->second);
      if (p.size() < 3) {
        ErrAt(loc, "'" + full + "' needs more: steps." + p[1] + ".outputs.<artifacts|params|metrics>.<name> or "
                   "steps." + p[1] + ".phase");
        return;
      }
      if (p[2] == "phase") {
        need(3, "steps." + p[1] + ".phase");
        return;
      }
      if (p[2] != "outputs") {
        ErrAt(loc, "unknown field '" + p[2] + "' in '" + full + "'" + DidYouMean(p[2], kStepRefFields) +
                       (ClosestMatch(p[2], kStepRefFields).empty() ? "; use outputs or phase" : ""));
        return;
      }
      if (p.size() < 4) {
        ErrAt(loc, "'" + full + "' needs more: steps." + p[1] + ".outputs.<artifacts|params|metrics>.<name>");
        return;
      }
      const std::string& kind = p[3];
      if (kind == "artifacts" || kind == "params") {
        if (!need(5, "steps." + p[1] + ".outputs." + kind + ".<name>")) return;
        Keys names;
        if (kind == "artifacts")
          for (const auto& a : target.output_artifacts) names.push_back(a.name);
        else
          for (const auto& a : target.output_params) names.push_back(a.name);
        if (!Contains(names, p[4])) {
          std::string what = kind == "artifacts" ? "output artifact" : "output parameter";
          std::string m = ClosestMatch(p[4], names);
          ErrAt(loc, "step '" + p[1] + "' has no " + what + " '" + p[4] + "'" +
                         (!m.empty() ? "; did you mean '" + m + "'?"
                          : names.empty() ? "; it declares none (add it under outputs." + kind + ")"
                                          : "; it declares: " + JoinKeys(names)));
        }
        return;
      }
      if (kind == "metrics") {
        if (!target.metrics_file) {
          ErrAt(loc, "step '" + p[1] + "' declares no metrics file; add 'outputs: {metrics: metrics.json}' to it");
          return;
        }
        if (p.size() < 5) ErrAt(loc, "'" + full + "' needs a metric name: steps." + p[1] + ".outputs.metrics.<name>");
        return;
      }
      ErrAt(loc, "unknown output kind '" + kind + "' in '" + full + "'" + DidYouMean(kind, kOutputKinds) +
                     (ClosestMatch(kind, kOutputKinds).empty() ? "; use artifacts, params or metrics" : ""));
      return;
    }
    if (root == "item" || root == "item_index") {
      if (!s.foreach && !info.foreach_written) {
        ErrAt(loc, "'" + full + "' is only defined in a step with 'foreach'");
        return;
      }
      if (field == TemplateField::kForeach) {
        ErrAt(loc, "'" + full + "' cannot be used in the 'foreach' that defines it");
        return;
      }
      if (root == "item_index" && p.size() > 1) ErrAt(loc, "'item_index' is a number; it has no field '" + p[1] + "'");
      // Each field is checked against the items once per step (a step may
      // name it in many templates over many items); every use reports it.
      if (root == "item" && p.size() > 1 && s.foreach && s.foreach->kind == ForEachSpec::Kind::kItems &&
          !s.foreach->items.empty()) {
        auto [it, inserted] = info.item_field_errors.try_emplace(full);
        if (inserted) it->second = ItemFieldError(s.foreach->items, p[1], full);
        if (!it->second.empty()) ErrAt(loc, it->second);
      }
      return;
    }
    if (root == "inputs") {
      if (field == TemplateField::kInputs) {
        ErrAt(loc, "an input cannot refer to another input ('" + full + "'); refer to the step output directly");
        return;
      }
      if (p.size() < 2) {
        ErrAt(loc, "'inputs' needs an input name: inputs.<name>");
        return;
      }
      if (!s.inputs.count(p[1])) {
        Keys names;
        for (const auto& [k, v] : s.inputs) names.push_back(k);
        std::string m = ClosestMatch(p[1], names);
        ErrAt(loc, "unknown input '" + p[1] + "' in '" + full + "'" +
                       (!m.empty() ? "; did you mean '" + m + "'?"
                        : names.empty() ? "; step '" + s.name + "' declares no inputs"
                                        : "; declared inputs are: " + JoinKeys(names)));
        return;
      }
      if (p.size() > 2) ErrAt(loc, "input '" + p[1] + "' is a path; it has no field '" + p[2] + "'");
      return;
    }
    if (root == "run" || root == "pipeline") {
      const Keys& fields = root == "run" ? kRunFields : kPipelineFields;
      if (p.size() != 2 || !Contains(fields, p[1])) {
        std::string m = p.size() >= 2 ? ClosestMatch(p[1], fields) : "";
        ErrAt(loc, "unknown name '" + full + "'" + (m.empty() ? "" : "; did you mean '" + root + "." + m + "'?") +
                       (m.empty() ? "; " + root + " has: " + JoinKeys(fields) : ""));
        return;
      }
      if (root == "run" && p[1] == "status" && !s.is_finally)
        WarnAt(loc, "'run.status' is only final in finally steps; in step '" + s.name + "' it is always 'Running'");
      return;
    }
    // Unknown root: a misspelt root, or a bare parameter/step name.
    std::string hint = ClosestMatch(root, kRoots);
    if (!hint.empty()) {
      std::string fixed = hint;
      for (size_t i = 1; i < p.size(); ++i) fixed += "." + p[i];
      ErrAt(loc, "unknown name '" + full + "'; did you mean '" + fixed + "'?");
    } else if (FindParam(root)) {
      ErrAt(loc, "unknown name '" + full + "'; did you mean 'params." + full + "'?");
    } else if (index_.count(root)) {
      ErrAt(loc, "unknown name '" + full + "'; did you mean 'steps." + full + "'?");
    } else {
      ErrAt(loc, "unknown name '" + full + "'; names start with one of: " + JoinKeys(kRoots) +
                     " (quote text: 'like this')");
    }
  }

  // `item.<field>` over a literal list: every item must be a map with it.
  // Returns the error for the first item that is not, or "".
  std::string ItemFieldError(const std::vector<Json>& items, const std::string& field, const std::string& full) {
    for (size_t i = 0; i < items.size(); ++i) {
      const Json& it = items[i];
      if (!it.is_object()) {
        return "'" + full + "': foreach item " + std::to_string(i) + " (" + it.dump() +
               ") is not a map, so it has no field '" + field + "'";
      }
      if (!it.contains(field)) {
        Keys keys;
        for (auto kv = it.begin(); kv != it.end(); ++kv) keys.push_back(kv.key());
        std::string m = ClosestMatch(field, keys);
        return "'" + full + "': foreach item " + std::to_string(i) + " has no field '" + field + "'" +
               (m.empty() ? "; it has: " + JoinKeys(keys) : "; did you mean 'item." + m + "'?");
      }
    }
    return "";
  }

  // A foreach over exactly one name that can never be a list.
  void CheckForeachSubject(const Template& t, const std::vector<expr::Reference>& refs) {
    if (refs.size() != 1) return;
    std::string_view text = t.text;
    size_t b = text.find("{{") + 2, e = text.rfind("}}");
    std::string_view inner = text.substr(b, e - b);
    inner = Trim(inner);
    const auto& p = refs[0].path;
    if (inner != refs[0].ToString()) return;
    std::string why;
    if (p[0] == "run" || p[0] == "pipeline") {
      why = "a string";
    } else if (p[0] == "steps" && p.size() == 5 && p[2] == "outputs" && p[3] == "artifacts") {
      auto it = index_.find(p[1]);
      if (it != index_.end() && !all_[it->second]->foreach) why = "one artifact path";
    } else if (p[0] == "steps" && p.size() == 3 && p[2] == "phase") {
      auto it = index_.find(p[1]);
      if (it != index_.end() && !all_[it->second]->foreach) why = "a phase name";
    }
    if (!why.empty())
      ErrAt(At(t, refs[0].offset), "'foreach' over '" + std::string(inner) + "', which is " + why +
                                       ", not a list; give a list parameter or an output holding a JSON array");
  }

  void CheckCodeFiles() {
    if (dir_.empty()) return;
    for (const YamlNode* n : code_nodes_) {
      std::vector<const YamlNode*> items;
      if (n->IsScalar()) items.push_back(n);
      else if (n->IsSequence())
        for (uint32_t c : n->children) items.push_back(&N(c));
      for (const YamlNode* item : items) {
        if (!item->IsScalar()) continue;
        std::filesystem::path p(item->value);
        if (p.is_relative()) p = std::filesystem::path(dir_) / p;
        std::error_code ec;
        if (!std::filesystem::exists(p, ec))
          Err(*item, "code file '" + item->value + "' not found (looked for " + p.lexically_normal().string() +
                         "); code paths are relative to the " + (component_mode_ ? "component" : "pipeline") + " file");
      }
    }
  }

  // Reports every dependency cycle once, as "a -> b -> a" where "x -> y"
  // means x depends on y, starting at the cycle's first step in file order.
  // Iterative DFS: O(V + E).
  void FindCycles(const std::vector<StepInfo*>& infos) {
    const size_t n = all_.size();
    std::vector<uint8_t> color(n, 0);  // 0 new, 1 on stack, 2 done
    std::vector<int> pos_on_stack(n, -1);
    std::vector<int> stack;
    std::vector<size_t> next_edge(n, 0);
    std::unordered_set<std::string> reported;
    for (size_t start = 0; start < n; ++start) {
      if (color[start]) continue;
      stack.push_back(static_cast<int>(start));
      color[start] = 1;
      pos_on_stack[start] = 0;
      while (!stack.empty()) {
        int u = stack.back();
        auto& deps = infos[u]->deps;
        if (next_edge[u] < deps.size()) {
          int v = deps[next_edge[u]++];
          if (color[v] == 0) {
            color[v] = 1;
            pos_on_stack[v] = static_cast<int>(stack.size());
            stack.push_back(v);
          } else if (color[v] == 1) {
            std::vector<int> cycle(stack.begin() + pos_on_stack[v], stack.end());
            auto first = std::min_element(cycle.begin(), cycle.end());
            std::rotate(cycle.begin(), first, cycle.end());
            std::vector<int> key = cycle;
            std::sort(key.begin(), key.end());
            std::string key_text;
            for (int k : key) key_text += std::to_string(k) + ",";
            if (!reported.insert(key_text).second) continue;
            std::string path;
            for (int k : cycle) path += all_[k]->name + " -> ";
            path += all_[cycle.front()]->name;
            ErrAt(all_[cycle.front()]->loc, "dependency cycle: " + path);
          }
        } else {
          color[u] = 2;
          pos_on_stack[u] = -1;
          stack.pop_back();
        }
      }
    }
  }

  std::string_view text_;
  std::string file_;
  std::string dir_;  // directory of the pipeline file; "" when loaded from memory
  bool parse_cache_ = false;
  YamlDocument doc_;
  PipelineSpec spec_;
  StepSpec base_;  // defaults applied to every step
  Json default_kubernetes_;  // defaults.kubernetes, merged into each step's
  std::vector<StepInfo> step_info_, finally_info_;
  std::vector<StepSpec*> all_;
  std::unordered_map<std::string, int> index_;
  Keys step_names_;  // StepNames()
  std::vector<const YamlNode*> code_nodes_;
  std::vector<size_t> line_starts_;
  // Component files by path as shown; null for one that could not be used.
  std::map<std::string, std::unique_ptr<Component>> components_;
  bool component_mode_ = false;  // this loader reads a component file
  std::string using_dir_;  // a component's loader: the using pipeline's directory, absolute
  // The files from the top pipeline down to this one, {absolute, as shown};
  // empty for the top one (Chain()).
  std::vector<std::pair<std::string, std::string>> chain_;
  // Sub-pipeline files by absolute path; null for one that could not be used.
  std::map<std::string, std::unique_ptr<SubPipeline>> subpipelines_;
  std::map<std::string, const SubPipeline*> sub_uses_;  // step name -> what it runs
  // This file's `outputs:`, as SubPipeline::artifacts and params.
  std::map<std::string, std::pair<std::string, std::string>> out_artifacts_, out_params_;
  // (map, key) for each unknown key of a map that resembles `key`.
  struct SuggestedHash {
    size_t operator()(const std::pair<const YamlNode*, std::string>& p) const {
      return std::hash<const void*>()(p.first) ^ std::hash<std::string>()(p.second);
    }
  };
  std::unordered_set<std::pair<const YamlNode*, std::string>, SuggestedHash> suggested_;
  std::unordered_map<std::string_view, const ParamSpec*> param_index_;  // built after ParseParams
  std::vector<size_t> edge_stamp_;  // per step: 1 + the step whose deps last received it
  const OperatorRegistry& ops_;
  // `uses: git+...` text -> {the file in the cache, the source at its commit}.
  std::map<std::string, std::pair<std::string, std::string>> git_resolved_;
  Keys step_keys_;   // kStepBaseKeys, the operators' section keys, kubernetes
  Keys step_types_;  // the operators' names, in registration order
  std::vector<Diagnostic> diags_;
  size_t errors_ = 0;     // errors reported so far
  bool stopped_ = false;  // more than kMaxErrors errors: checking has stopped
};

}  // namespace


LoadResult LoadPipelineString(std::string_view text, const std::string& file_name, const LoadOptions& options) {
  Loader loader(text, file_name, "", OperatorRegistry::OrGlobal(options.operators));
  return loader.Run();
}

LoadResult LoadPipelineFile(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.diagnostics.push_back({{path, 0, 0}, Severity::kError,
                             std::string("cannot read the pipeline file: ") + std::strerror(errno)});
    return r;
  }
  std::string text = ReadUpToLimit(in);
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  Loader loader(text, path, dir, OperatorRegistry::OrGlobal(options.operators), /*parse_cache=*/true);
  return loader.Run();
}

// ---------------------------------------------------------------------------
// BindParams
// ---------------------------------------------------------------------------

namespace {

std::optional<Json> ParseTyped(ParamType type, const std::string& text) {
  switch (type) {
    case ParamType::kString: return Json(text);
    case ParamType::kInt: {
      int64_t v;
      if (IsYamlInt(text, &v)) return Json(v);
      return std::nullopt;
    }
    case ParamType::kNumber: {
      int64_t i;
      if (IsYamlInt(text, &i)) return Json(i);
      double d;
      if (IsYamlFloat(text, &d) && std::isfinite(d)) return Json(d);
      return std::nullopt;
    }
    case ParamType::kBool: {
      std::string l = text;
      std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
      if (l == "true" || l == "1" || l == "yes") return Json(true);
      if (l == "false" || l == "0" || l == "no") return Json(false);
      return std::nullopt;
    }
    case ParamType::kList: {
      size_t b = text.find_first_not_of(" \t");
      if (b != std::string::npos && text[b] == '[') {
        Json v = Json::parse(text, nullptr, false);
        if (v.is_discarded() || !v.is_array()) return std::nullopt;
        return v;
      }
      Json out = Json::array();
      if (text.empty()) return out;
      size_t start = 0;
      while (true) {
        size_t comma = text.find(',', start);
        std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        out.push_back(std::string(Trim(part, " \t")));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      return out;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<Json> BindParams(const PipelineSpec& spec, const std::map<std::string, std::string>& values) {
  std::vector<std::string> errors;
  Json out = Json::object();
  Keys names;
  for (const auto& p : spec.params) names.push_back(p.name);
  for (const auto& [name, text] : values) {
    const ParamSpec* p = spec.FindParam(name);
    if (!p) {
      std::string m = ClosestMatch(name, names);
      errors.push_back("unknown parameter '" + name + "'" +
                       (!m.empty() ? "; did you mean '" + m + "'?"
                        : names.empty() ? "; the pipeline declares no params"
                                        : "; declared params are: " + JoinKeys(names)));
      continue;
    }
    auto v = ParseTyped(p->type, text);
    if (!v) {
      std::string hint;
      if (p->type == ParamType::kList) hint = " (give a JSON array or comma-separated values)";
      else if (p->type == ParamType::kBool) hint = " (give true or false)";
      errors.push_back("parameter '" + name + "' expects " + ParamTypeName(p->type) + ", got '" + text + "'" + hint);
      continue;
    }
    out[name] = std::move(*v);
  }
  for (const auto& p : spec.params) {
    if (out.contains(p.name) || values.count(p.name)) continue;
    if (p.default_value) out[p.name] = *p.default_value;
    else errors.push_back("missing required parameter '" + p.name + "'; pass -p " + p.name + "=VALUE");
  }
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) {
      if (!msg.empty()) msg += "\n";
      msg += e;
    }
    return Error(Status::InvalidArgument(std::move(msg)));
  }
  return out;
}

}  // namespace sluice::dsl
