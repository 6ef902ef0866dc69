#include "engine/launch.h"

namespace sluice {
namespace {

Json ArtifactsJson(const std::vector<TaskArtifact>& list, bool with_digest) {
  Json a = Json::array();
  for (const auto& x : list) {
    Json e = {{"name", x.name}, {"path", x.path}};
    if (with_digest) e["digest"] = x.digest;
    else e["type"] = ArtifactTypeName(x.type);
    a.push_back(std::move(e));
  }
  return a;
}

// The string at `key` of object `j` ("" when absent); false when present but
// not a string.
bool GetString(const Json& j, const char* key, std::string* out) {
  if (!j.is_object() || !j.contains(key)) return true;
  if (!j[key].is_string()) return false;
  *out = j[key].get<std::string>();
  return true;
}

}  // namespace

ArtifactType ArtifactTypeFromName(const std::string& name) {
  for (ArtifactType t : {ArtifactType::kDataset, ArtifactType::kModel, ArtifactType::kMetrics}) {
    if (name == ArtifactTypeName(t)) return t;
  }
  return ArtifactType::kOther;
}

Json LaunchSpecToJson(const LaunchSpec& s) {
  Json params = Json::array();
  for (const auto& p : s.params) params.push_back({{"name", p.name}, {"path", p.path}});
  Json j = {{"step", s.step},
            {"store",
             {{"url", s.store_url}, {"endpoint", s.store_endpoint}, {"region", s.store_region},
              {"cache", s.cache_dir}}},
            {"inputs", ArtifactsJson(s.inputs, true)},
            {"workdir", s.workdir},
            {"argv", s.argv},
            {"outputs",
             {{"artifacts", ArtifactsJson(s.outputs, false)}, {"params", params}, {"metrics", s.metrics_file}}},
            {"result", s.result_key},
            {"termination_log", s.termination_log}};
  if (!s.code_digest.empty()) j["code"] = {{"digest", s.code_digest}, {"dir", s.code_dir}};
  if (!s.reporter.empty()) j["reporter"] = s.reporter;
  return j;
}

bool LaunchReports(const LaunchSpec& spec, const std::function<const char*(const char*)>& getenv) {
  if (spec.reporter.empty()) return true;
  if (spec.reporter == "pytorch-rank0") {
    const char* rank = getenv("RANK");
    return rank != nullptr && std::string(rank) == "0";
  }
  if (spec.reporter == "tf-chief") {
    const char* text = getenv("TF_CONFIG");
    if (text == nullptr) return false;
    Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object() || !config.contains("task") || !config["task"].is_object()) return false;
    const Json& task = config["task"];
    const std::string type = task.contains("type") && task["type"].is_string() ? task["type"].get<std::string>() : "";
    const int64_t index = task.contains("index") && task["index"].is_number_integer() ? task["index"].get<int64_t>() : -1;
    if (type == "chief" || type == "master") return true;
    const Json cluster = config.contains("cluster") && config["cluster"].is_object() ? config["cluster"] : Json::object();
    return type == "worker" && index == 0 && !cluster.contains("chief") && !cluster.contains("master");
  }
  return false;  // a rule this launcher does not know: never report twice
}

Result<LaunchSpec> LaunchSpecFromJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [](const std::string& what) {
    return Error(Status::InvalidArgument("launch spec: " + what));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  LaunchSpec s;
  const Json empty = Json::object();
  const Json& store = j.contains("store") ? j["store"] : empty;
  const Json& code = j.contains("code") ? j["code"] : empty;
  const Json& outputs = j.contains("outputs") ? j["outputs"] : empty;
  if (!GetString(j, "step", &s.step) || !GetString(store, "url", &s.store_url) ||
      !GetString(store, "endpoint", &s.store_endpoint) || !GetString(store, "region", &s.store_region) ||
      !GetString(store, "cache", &s.cache_dir) || !GetString(code, "digest", &s.code_digest) ||
      !GetString(code, "dir", &s.code_dir) || !GetString(j, "workdir", &s.workdir) ||
      !GetString(outputs, "metrics", &s.metrics_file) || !GetString(j, "result", &s.result_key) ||
      !GetString(j, "termination_log", &s.termination_log) || !GetString(j, "reporter", &s.reporter)) {
    return bad("a field that must be a string is not");
  }
  if (s.store_url.empty()) return bad("store.url is missing");
  if (s.cache_dir.empty()) return bad("store.cache is missing");
  if (s.workdir.empty()) return bad("workdir is missing");
  if (s.result_key.empty()) return bad("result is missing");
  if (!j.contains("argv") || !j["argv"].is_array() || j["argv"].empty()) return bad("argv must be a non-empty list");
  for (const auto& a : j["argv"]) {
    if (!a.is_string()) return bad("argv must be a list of strings");
    s.argv.push_back(a.get<std::string>());
  }
  auto list = [&](const Json& parent, const char* key, auto&& each) -> Status {
    if (!parent.contains(key)) return Status::Ok();
    if (!parent[key].is_array()) return Status::InvalidArgument(std::string("launch spec: ") + key + " must be a list");
    for (const auto& e : parent[key]) {
      if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("path") ||
          !e["path"].is_string()) {
        return Status::InvalidArgument(std::string("launch spec: each of ") + key + " needs a name and a path");
      }
      each(e);
    }
    return Status::Ok();
  };
  SLUICE_RETURN_IF_ERROR_RESULT(list(j, "inputs", [&](const Json& e) {
    s.inputs.push_back({e["name"].get<std::string>(), e.value("digest", ""), e["path"].get<std::string>()});
  }));
  SLUICE_RETURN_IF_ERROR_RESULT(list(outputs, "artifacts", [&](const Json& e) {
    s.outputs.push_back({e["name"].get<std::string>(), "", e["path"].get<std::string>(),
                         ArtifactTypeFromName(e.value("type", "other"))});
  }));
  SLUICE_RETURN_IF_ERROR_RESULT(list(outputs, "params", [&](const Json& e) {
    s.params.push_back({e["name"].get<std::string>(), e["path"].get<std::string>()});
  }));
  for (const auto& in : s.inputs) {
    if (in.digest.empty()) return bad("input '" + in.name + "' has no digest");
  }
  return s;
}

Json LaunchResultToJson(const LaunchResult& r) {
  Json outputs = Json::object();
  for (const auto& [name, o] : r.outputs) {
    outputs[name] = {{"digest", o.digest},
                     {"type", ArtifactTypeName(o.type)},
                     {"size", o.size},
                     {"directory", o.is_directory}};
  }
  Json j = {{"exit_code", r.exit_code}, {"outputs", outputs}, {"params", r.params}, {"metrics", r.metrics}};
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

Result<LaunchResult> LaunchResultFromJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [] { return Error(Status::InvalidArgument("not a sluice-launcher result")); };
  if (j.is_discarded() || !j.is_object() || !j.contains("exit_code") || !j["exit_code"].is_number_integer())
    return bad();
  LaunchResult r;
  r.exit_code = j["exit_code"].get<int>();
  if (j.contains("outputs")) {
    if (!j["outputs"].is_object()) return bad();
    for (const auto& [name, o] : j["outputs"].items()) {
      if (!o.is_object() || !o.contains("digest") || !o["digest"].is_string()) return bad();
      LaunchOutput out;
      out.digest = o["digest"].get<std::string>();
      out.type = ArtifactTypeFromName(o.value("type", "other"));
      out.size = o.value("size", int64_t{0});
      out.is_directory = o.value("directory", false);
      r.outputs[name] = std::move(out);
    }
  }
  if (j.contains("params") && j["params"].is_object()) r.params = j["params"];
  if (j.contains("metrics") && j["metrics"].is_object()) r.metrics = j["metrics"];
  if (j.contains("error") && j["error"].is_string()) r.error = j["error"].get<std::string>();
  return r;
}

}  // namespace sluice
