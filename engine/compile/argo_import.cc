#include "engine/compile/argo_import.h"

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>

namespace sluice::compile {
namespace {

std::string Annotation(const Json& object, const std::string& key) {
  const Json* meta = object.contains("metadata") ? &object["metadata"] : nullptr;
  if (meta == nullptr || !meta->contains("annotations") || !(*meta)["annotations"].is_object()) return "";
  const Json& a = (*meta)["annotations"];
  return a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : "";
}

std::string Str(const Json& j, const std::string& key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// "a=b c=d" -> {a: b, c: d}
std::map<std::string, std::string> Pairs(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    size_t eq = word.find('=');
    if (eq != std::string::npos) out[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return out;
}

std::optional<TimePoint> NodeTime(const Json& node, const std::string& key) {
  std::string t = Str(node, key);
  if (t.empty()) return std::nullopt;
  return ParseKubernetesTime(t);
}

NodePhase MapPhase(const std::string& argo) {
  if (auto p = ParseNodePhase(argo)) return *p;
  return NodePhase::kError;
}

std::string OutcomeOf(NodePhase phase) {
  switch (phase) {
    case NodePhase::kSucceeded: return "Succeeded";
    case NodePhase::kFailed: return "Failed";
    case NodePhase::kCancelled: return "Cancelled";
    case NodePhase::kRunning: return "Running";
    default: return "Error";
  }
}

// The parameters of a node's inputs or outputs, by name.
std::map<std::string, std::string> Parameters(const Json& node, const std::string& which) {
  std::map<std::string, std::string> out;
  if (!node.contains(which) || !node[which].contains("parameters")) return out;
  for (const auto& p : node[which]["parameters"])
    if (p.contains("name") && p.contains("value") && p["value"].is_string())
      out[p["name"].get<std::string>()] = p["value"].get<std::string>();
  return out;
}

// Every template of the workflow by name: its own, and those it stored
// (from a WorkflowTemplate it refers to).
std::map<std::string, Json> Templates(const Json& wf) {
  std::map<std::string, Json> out;
  auto add = [&](const Json& list) {
    for (const auto& t : list)
      if (t.is_object() && t.contains("name")) out.emplace(t["name"].get<std::string>(), t);
  };
  if (wf.contains("status") && wf["status"].contains("storedTemplates")) {
    Json stored = Json::array();
    for (const auto& [key, t] : wf["status"]["storedTemplates"].items()) stored.push_back(t);
    add(stored);
  }
  if (wf.contains("status") && wf["status"].contains("storedWorkflowTemplateSpec") &&
      wf["status"]["storedWorkflowTemplateSpec"].contains("templates"))
    add(wf["status"]["storedWorkflowTemplateSpec"]["templates"]);
  if (wf.contains("spec") && wf["spec"].contains("templates")) add(wf["spec"]["templates"]);
  return out;
}

}  // namespace

std::optional<TimePoint> ParseKubernetesTime(const std::string& text) {
  struct tm tm = {};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return std::nullopt;
  auto t = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (*rest == '.') {
    ++rest;
    int64_t micros = 0;
    int digits = 0;
    while (*rest >= '0' && *rest <= '9') {
      if (digits < 6) {
        micros = micros * 10 + (*rest - '0');
        ++digits;
      }
      ++rest;
    }
    while (digits++ < 6) micros *= 10;
    t += std::chrono::microseconds(micros);
  }
  if (*rest != 'Z' || rest[1] != '\0') return std::nullopt;
  return t;
}

Result<ImportedRun> ImportArgoWorkflow(const Json& wf) {
  if (!wf.is_object() || Str(wf, "kind") != "Workflow")
    return Error(Status::InvalidArgument("not an Argo Workflow (kind " + Str(wf, "kind") + ")"));
  const std::string name = wf["metadata"].value("name", "");
  const std::string pipeline = Annotation(wf, "sluice.dev/pipeline");
  if (pipeline.empty())
    return Error(Status::InvalidArgument(
        "workflow " + name + " was not compiled by `sluice compile --target argo` (it has no "
        "sluice.dev/pipeline annotation), so its nodes cannot be mapped to pipeline steps"));
  const Json status = wf.value("status", Json::object());
  const std::string wf_phase = Str(status, "phase");
  auto run_phase = ParseRunPhase(wf_phase);
  if (!run_phase || !IsTerminal(*run_phase))
    return Error(Status::FailedPrecondition(
        "workflow " + name + " has not finished (phase " + (wf_phase.empty() ? "none yet" : wf_phase) +
        "); import it once it has (kubectl wait --for=jsonpath='{.status.phase}'=Succeeded workflow/" +
        name + ")"));

  ImportedRun out;
  RunRecord& run = out.run;
  run.id = name;
  run.pipeline = pipeline;
  run.pipeline_digest = Annotation(wf, "sluice.dev/pipeline-digest");
  run.executor = "argo";
  run.phase = *run_phase;
  run.message = Str(status, "message");
  run.host = "argo:" + wf["metadata"].value("namespace", "") + "/" + name;
  if (auto t = ParseKubernetesTime(wf["metadata"].value("creationTimestamp", ""))) run.created_at = *t;
  run.started_at = NodeTime(status, "startedAt");
  run.finished_at = NodeTime(status, "finishedAt");
  if (wf.contains("spec") && wf["spec"].contains("arguments") && wf["spec"]["arguments"].contains("parameters"))
    for (const auto& p : wf["spec"]["arguments"]["parameters"]) {
      std::string v = Str(p, "value");
      Json parsed = Json::parse(v, nullptr, /*allow_exceptions=*/false);
      run.params[p.value("name", "")] = parsed.is_discarded() || parsed.is_string() ? Json(v) : parsed;
    }

  const std::map<std::string, Json> templates = Templates(wf);
  const Json nodes = status.value("nodes", Json::object());
  std::map<std::string, std::string> parent;
  for (const auto& [id, node] : nodes.items())
    for (const auto& c : node.value("children", Json::array())) parent[c.get<std::string>()] = id;

  for (const auto& [id, node] : nodes.items()) {
    const std::string tname = Str(node, "templateName");
    auto t = templates.find(tname);
    if (t == templates.end() || Annotation(t->second, "sluice.dev/step") != tname) continue;
    const std::string type = Str(node, "type");
    if (type == "TaskGroup" || type == "StepGroup") continue;
    auto p = parent.find(id);
    if (p != parent.end() && nodes.contains(p->second) && Str(nodes[p->second], "type") == "Retry" &&
        Str(nodes[p->second], "templateName") == tname)
      continue;  // an attempt of a Retry node

    StepRecord step;
    step.run_id = run.id;
    step.step = tname;
    step.instance = tname;
    // A foreach instance: "train(1:rf)".
    std::string display = Str(node, "displayName");
    if (display.size() > tname.size() + 2 && display.compare(0, tname.size() + 1, tname + "(") == 0 &&
        display.back() == ')') {
      std::string inner = display.substr(tname.size() + 1, display.size() - tname.size() - 2);
      size_t colon = inner.find(':');
      char* end = nullptr;
      long index = std::strtol(inner.c_str(), &end, 10);
      if (colon != std::string::npos && end == inner.c_str() + colon) {
        step.index = static_cast<int>(index);
        std::string item = inner.substr(colon + 1);
        Json parsed = Json::parse(item, nullptr, false);
        step.item = parsed.is_discarded() ? Json(item) : parsed;
        step.instance = tname + "[" + std::to_string(index) + "]";
      }
    }
    step.phase = MapPhase(Str(node, "phase"));
    if (node.contains("memoizationStatus") && node["memoizationStatus"].value("hit", false)) {
      step.phase = NodePhase::kCached;
      step.cached_from = "argo-memoize:" + node["memoizationStatus"].value("cacheName", "") + "/" +
                         node["memoizationStatus"].value("key", "");
    }
    step.message = Str(node, "message");
    step.started_at = NodeTime(node, "startedAt");
    step.finished_at = NodeTime(node, "finishedAt");

    // Outputs.
    std::map<std::string, ArtifactType> types;
    for (const auto& [a, ty] : Pairs(Annotation(t->second, "sluice.dev/artifacts"))) {
      ArtifactType at = ArtifactType::kOther;
      if (ty == "dataset") at = ArtifactType::kDataset;
      else if (ty == "model") at = ArtifactType::kModel;
      else if (ty == "metrics") at = ArtifactType::kMetrics;
      types[a] = at;
    }
    std::vector<ImportedArtifact> outputs;
    const std::string kArtifact = "sluice-artifact-";
    for (const auto& [pname, value] : Parameters(node, "outputs")) {
      if (pname == "sluice-metrics") {
        Json m = Json::parse(value, nullptr, false);
        if (m.is_object())
          for (const auto& [k, v] : m.items())
            if (v.is_number()) step.metrics[k] = v;
      } else if (pname.rfind(kArtifact, 0) == 0) {
        std::string a = pname.substr(kArtifact.size());
        outputs.push_back({a, value, types.count(a) ? types[a] : ArtifactType::kOther});
      } else {
        step.output_params[pname] = value;
      }
    }
    // Inputs: each declared input's parameter (a fan-in is a JSON list).
    std::vector<ImportedArtifact> inputs;
    auto in_params = Parameters(node, "inputs");
    for (const auto& [input, arg] : Pairs(Annotation(t->second, "sluice.dev/inputs"))) {
      auto v = in_params.find(arg);
      if (v == in_params.end()) continue;
      Json list = Json::parse(v->second, nullptr, false);
      if (list.is_array()) {
        for (const auto& e : list)
          if (e.is_string()) inputs.push_back({input, e.get<std::string>(), ArtifactType::kOther});
      } else {
        inputs.push_back({input, v->second, ArtifactType::kOther});
      }
    }

    // Attempts.
    std::vector<Json> attempts;
    if (type == "Retry") {
      for (const auto& c : node.value("children", Json::array()))
        if (nodes.contains(c.get<std::string>())) attempts.push_back(nodes[c.get<std::string>()]);
    } else if (type == "Pod" || type == "DAG") {
      attempts.push_back(node);
    }
    step.attempts = static_cast<int>(attempts.size());
    for (size_t i = 0; i < attempts.size(); ++i) {
      const Json& a = attempts[i];
      ImportedExecution e;
      ExecutionRecord& r = e.record;
      r.run_id = run.id;
      r.instance = step.instance;
      r.attempt = static_cast<int>(i) + 1;
      NodePhase ap = MapPhase(Str(a, "phase"));
      r.outcome = OutcomeOf(ap);
      r.message = Str(a, "message");
      if (a.contains("outputs") && a["outputs"].contains("exitCode"))
        r.exit_code = std::atoi(Str(a["outputs"], "exitCode").c_str());
      r.external_id = type == "DAG" ? Str(a, "name") : Str(a, "id");
      if (auto s = NodeTime(a, "startedAt")) r.started_at = *s;
      r.finished_at = NodeTime(a, "finishedAt");
      r.snapshot = {{"source", "argo"},
                    {"workflow", name},
                    {"node", Str(a, "id")},
                    {"template", tname},
                    {"inputs", Json::object()}};
      for (const auto& [k, v] : Parameters(a, "inputs")) r.snapshot["inputs"][k] = v;
      e.inputs = inputs;
      if (ap == NodePhase::kSucceeded && i + 1 == attempts.size()) e.outputs = outputs;
      step.exit_code = r.exit_code;
      out.executions.push_back(std::move(e));
    }
    out.steps.push_back(std::move(step));
  }
  std::stable_sort(out.steps.begin(), out.steps.end(), [](const StepRecord& a, const StepRecord& b) {
    auto ta = a.started_at.value_or(TimePoint::max()), tb = b.started_at.value_or(TimePoint::max());
    if (ta != tb) return ta < tb;
    return a.instance < b.instance;
  });
  return out;
}

}  // namespace sluice::compile
