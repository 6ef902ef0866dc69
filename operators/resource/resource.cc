#include "operators/resource/resource.h"

#include <cctype>

#include "operators/kubernetes/manifests.h"
#include "operators/resource/condition.h"

namespace sluice::operators {
namespace {

constexpr char kAnnotationSuccess[] = "sluice.dev/success-condition";
constexpr char kAnnotationFailure[] = "sluice.dev/failure-condition";
constexpr char kAnnotationPlural[] = "sluice.dev/plural";
// Pods of such objects append suffixes ("-launcher", "-worker-3") to the
// object's name, as TFJob's do.
constexpr size_t kMaxNameLength = 48;

const char* const kKeys[] = {"manifest", "successCondition", "failureCondition", "plural"};

std::string JsonType(const Json& v) {
  if (v.is_string()) return "a string";
  if (v.is_array()) return "a list";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_null()) return "null";
  return "a mapping";
}

std::string Annotation(const Json& object, const char* key) {
  const Json* meta = object.contains("metadata") ? &object["metadata"] : nullptr;
  if (!meta || !meta->is_object() || !meta->contains("annotations") || !(*meta)["annotations"].is_object()) return "";
  const Json& a = (*meta)["annotations"];
  return a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : "";
}

// The problems of a `resource:` section (without its `kubernetes:` part).
// `rendered`: templates are resolved, so conditions are checked even where
// they were written as templates.
std::vector<ConfigProblem> Problems(const Json& cfg, bool rendered) {
  std::vector<ConfigProblem> out;
  auto add = [&](std::vector<std::string> path, std::string message) {
    out.push_back(ConfigProblem{std::move(path), std::move(message)});
  };
  if (!cfg.is_object() || !cfg.contains("manifest")) {
    add({}, "a resource step needs 'resource: {manifest: ...}': the Kubernetes object to create, e.g. manifest: "
            "{apiVersion: kubeflow.org/v1, kind: XGBoostJob, spec: {...}}");
    return out;
  }
  for (const auto& [key, value] : cfg.items()) {
    if (key == "kubernetes") continue;
    bool known = false;
    for (const char* k : kKeys) known |= key == k;
    if (!known) add({key}, "unknown key '" + key + "' in resource (known: manifest, successCondition, "
                           "failureCondition, plural)");
  }
  const Json& m = cfg["manifest"];
  if (!m.is_object()) {
    add({"manifest"}, "'manifest' must be a mapping (the Kubernetes object), got " + JsonType(m));
  } else {
    for (const char* field : {"apiVersion", "kind"}) {
      if (!m.contains(field)) {
        add({"manifest"}, std::string("the manifest has no '") + field + "'" +
                              (std::string(field) == "kind" ? " (e.g. kind: MPIJob)"
                                                            : " (e.g. apiVersion: kubeflow.org/v1)"));
      } else if (!m[field].is_string() || m[field].get<std::string>().empty()) {
        add({"manifest", field}, std::string("'") + field + "' must be a non-empty string");
      } else if (m[field].get<std::string>().find("{{") != std::string::npos) {
        add({"manifest", field}, std::string("'") + field + "' cannot be a template: it says which API the object "
                                                              "is created in, before the run");
      }
    }
    if (m.contains("metadata")) {
      const Json& meta = m["metadata"];
      if (!meta.is_object()) {
        add({"manifest", "metadata"}, "'metadata' must be a mapping");
      } else {
        for (const char* field : {"name", "generateName"})
          if (meta.contains(field))
            add({"manifest", "metadata", field},
                std::string("remove '") + field + "': sluice names the object after the run, step and attempt, "
                                                  "so a resumed run finds it");
        if (meta.contains("namespace"))
          add({"manifest", "metadata", "namespace"},
              "remove 'namespace': set the step's kubernetes.namespace (or the pipeline's namespace) instead");
      }
    }
  }
  for (const char* field : {"successCondition", "failureCondition"}) {
    if (!cfg.contains(field)) continue;
    const Json& c = cfg[field];
    if (!c.is_string()) {
      add({field}, std::string("'") + field + "' must be a string, e.g. status.succeeded > 0");
      continue;
    }
    const std::string& text = c.get_ref<const std::string&>();
    if (!rendered && text.find("{{") != std::string::npos) continue;
    auto parsed = resource::ParseCondition(text);
    if (!parsed) add({field}, std::string(field) + " '" + text + "': " + parsed.error().message());
  }
  if (cfg.contains("plural")) {
    const Json& p = cfg["plural"];
    bool ok = p.is_string() && !p.get<std::string>().empty();
    if (ok)
      for (char ch : p.get<std::string>()) ok &= std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.';
    if (!ok) add({"plural"}, "'plural' must be the API resource name in lower case, e.g. mpijobs");
  }
  return out;
}

}  // namespace

std::string PluralOf(const std::string& kind) {
  std::string l;
  for (char c : kind) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l.empty()) return l;
  auto ends = [&](const std::string& s) { return l.size() >= s.size() && l.compare(l.size() - s.size(), s.size(), s) == 0; };
  if (ends("s") || ends("x") || ends("z") || ends("ch") || ends("sh")) return l + "es";
  if (ends("y") && l.size() > 1 && std::string("aeiou").find(l[l.size() - 2]) == std::string::npos)
    return l.substr(0, l.size() - 1) + "ies";
  return l + "s";
}

std::vector<ConfigProblem> ResourceOperator::CheckConfig(const StepSpec& step) const {
  return Problems(step.config, /*rendered=*/false);
}

Result<LocalPlan> ResourceOperator::PlanLocal(const Task& task, const PortAllocator&) const {
  return Error(Status::FailedPrecondition("steps of type 'resource' run only on Kubernetes: run with --executor "
                                          "kubernetes (or set executor: kubernetes on the step)"));
}

std::optional<KubernetesKind> ResourceOperator::Kind() const {
  return KubernetesKind{"", "", "", "", "", kMaxNameLength};
}

std::optional<KubernetesKind> ResourceOperator::KindOf(const Json& object) const {
  const std::string kind = object.value("kind", "");
  std::string plural = Annotation(object, kAnnotationPlural);
  if (plural.empty()) plural = PluralOf(kind);
  return KubernetesKind{object.value("apiVersion", ""), kind, plural, "", "", kMaxNameLength};
}

Result<Json> ResourceOperator::KubernetesObject(const Task& task, const KubernetesObjectOptions& o) const {
  for (const ConfigProblem& p : Problems(task.config, /*rendered=*/true)) {
    std::string at;
    for (const auto& part : p.path) at += (at.empty() ? "" : ".") + part;
    return Error(Status::InvalidArgument("step \"" + task.step + "\": resource" + (at.empty() ? "" : "." + at) +
                                         ": " + p.message));
  }
  auto s = Settings(task, o);
  if (!s) return Error(s.error());
  Json object = task.config["manifest"];
  const std::string plural = task.config.value("plural", "");
  if (!plural.empty()) object["metadata"]["annotations"][kAnnotationPlural] = plural;
  const KubernetesKind kind = *KindOf(object);
  Json meta = Metadata(task, o, *s, kind);
  Json& given = object["metadata"];
  if (given.contains("labels") && given["labels"].is_object()) {
    Json labels = given["labels"];
    labels.update(meta["labels"]);
    meta["labels"] = std::move(labels);
  }
  if (given.contains("annotations") && given["annotations"].is_object()) {
    Json annotations = given["annotations"];
    annotations.update(meta["annotations"]);
    meta["annotations"] = std::move(annotations);
  }
  for (const auto& [key, annotation] : {std::pair{"successCondition", kAnnotationSuccess},
                                        std::pair{"failureCondition", kAnnotationFailure}}) {
    const std::string text = task.config.value(key, "");
    if (!text.empty()) meta["annotations"][annotation] = text;
  }
  for (const auto& [k, v] : given.items())
    if (!meta.contains(k)) meta[k] = v;
  object["metadata"] = std::move(meta);
  return object;
}

WorkloadState ResourceOperator::ReadStatus(const Json& object) const {
  WorkloadState st;
  const std::string kind = object.value("kind", "object");
  // The conditions were checked when the object was built; one that does not
  // parse (an object edited since) never holds.
  auto failure = resource::ParseCondition(Annotation(object, kAnnotationFailure));
  if (failure) {
    if (const resource::Requirement* r = resource::FirstMatch(*failure, object)) {
      st.finished = true;
      st.outcome = TaskOutcome::kFailed;
      st.message = kind + " failed: failureCondition '" + r->ToString() + "' holds";
      return st;
    }
  }
  const std::string success_text = Annotation(object, kAnnotationSuccess);
  auto success = resource::ParseCondition(success_text);
  if (success && resource::MatchesAll(*success, object)) {
    st.finished = true;
    st.outcome = TaskOutcome::kSucceeded;
    st.message = success_text.empty() ? kind + " created (no successCondition)"
                                      : kind + " succeeded: successCondition '" + success_text + "' holds";
  }
  return st;
}

Operator::ArgoConditions ResourceOperator::ArgoResourceConditions(const Json& object) const {
  return ArgoConditions{Annotation(object, kAnnotationSuccess), Annotation(object, kAnnotationFailure)};
}

}  // namespace sluice::operators
