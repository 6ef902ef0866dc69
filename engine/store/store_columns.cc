#include "engine/store/store_columns.h"

#include <charconv>
#include <cstring>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include "engine/json_text.h"

namespace sluice {

namespace {

std::vector<ArtifactBinding> BindingsFromJson(const Json& j) {
  std::vector<ArtifactBinding> out;
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_object()) continue;
    ArtifactBinding b;
    b.name = e.value("name", "");
    b.artifact.digest = e.value("digest", "");
    b.artifact.uri = e.value("uri", "");
    b.artifact.type = ParseArtifactType(e.value("type", "other"));
    b.artifact.size = e.value("size", int64_t{0});
    b.artifact.is_directory = e.value("is_directory", false);
    b.artifact.properties = e.contains("properties") ? e["properties"] : Json::object();
    out.push_back(std::move(b));
  }
  return out;
}

// Reads what BindingsJsonText writes when no string needs escaping and no
// artifact has properties (a cache lookup per hit reads one); false for
// anything else, which BindingsFromJson then parses.
class BindingsScanner {
 public:
  explicit BindingsScanner(std::string_view t) : t_(t) {}

  bool Scan(std::vector<ArtifactBinding>* out) {
    if (!Lit("[")) return false;
    if (Lit("]")) return pos_ == t_.size();
    while (true) {
      ArtifactBinding b;
      std::string type;
      if (!Lit("{\"digest\":") || !Str(&b.artifact.digest) || !Lit(",\"is_directory\":")) return false;
      if (Lit("true")) b.artifact.is_directory = true;
      else if (!Lit("false")) return false;
      if (!Lit(",\"name\":") || !Str(&b.name) || !Lit(",\"properties\":{},\"size\":") || !Int(&b.artifact.size) ||
          !Lit(",\"type\":") || !Str(&type) || !Lit(",\"uri\":") || !Str(&b.artifact.uri) || !Lit("}"))
        return false;
      b.artifact.type = ParseArtifactType(type);
      out->push_back(std::move(b));
      if (Lit("]")) return pos_ == t_.size();
      if (!Lit(",")) return false;
    }
  }

 private:
  bool Lit(std::string_view lit) {
    if (t_.substr(pos_, lit.size()) != lit) return false;
    pos_ += lit.size();
    return true;
  }
  bool Str(std::string* out) {
    if (!Lit("\"")) return false;
    const size_t end = t_.find('"', pos_);
    if (end == std::string_view::npos) return false;
    std::string_view v = t_.substr(pos_, end - pos_);
    if (v.find('\\') != std::string_view::npos) return false;
    out->assign(v);
    pos_ = end + 1;
    return true;
  }
  bool Int(int64_t* out) {
    const char* b = t_.data() + pos_;
    auto [p, ec] = std::from_chars(b, t_.data() + t_.size(), *out);
    if (ec != std::errc() || p == b) return false;
    pos_ += static_cast<size_t>(p - b);
    return true;
  }

  std::string_view t_;
  size_t pos_ = 0;
};

}  // namespace

int64_t ToMillis(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint FromMillis(int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

std::string DumpJson(const Json& j) { return JsonText(j); }

std::string SnapshotColumn(const ExecutionRecord& e) {
  return e.snapshot_text.empty() ? DumpJson(e.snapshot) : e.snapshot_text;
}

Json ParseJson(const char* t, const Json& fallback) {
  if (t == nullptr) return fallback;
  if (std::strcmp(t, "{}") == 0) return Json::object();
  if (std::strcmp(t, "[]") == 0) return Json::array();
  if (std::strcmp(t, "null") == 0) return Json();
  Json j = Json::parse(t, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? fallback : j;
}

ArtifactType ParseArtifactType(const std::string& s) {
  if (s == "dataset") return ArtifactType::kDataset;
  if (s == "model") return ArtifactType::kModel;
  if (s == "metrics") return ArtifactType::kMetrics;
  return ArtifactType::kOther;
}

std::string BindingsJsonText(const std::vector<ArtifactBinding>& bindings) {
  std::string out = "[";
  for (const auto& b : bindings) {
    if (out.size() > 1) out += ',';
    out += "{\"digest\":";
    AppendJsonString(&out, b.artifact.digest);
    out += ",\"is_directory\":";
    out += b.artifact.is_directory ? "true" : "false";
    out += ",\"name\":";
    AppendJsonString(&out, b.name);
    out += ",\"properties\":" + DumpJson(b.artifact.properties) + ",\"size\":" + std::to_string(b.artifact.size) +
           ",\"type\":";
    AppendJsonString(&out, ArtifactTypeName(b.artifact.type));
    out += ",\"uri\":";
    AppendJsonString(&out, b.artifact.uri);
    out += '}';
  }
  return out + "]";
}

std::vector<ArtifactBinding> BindingsFromText(const char* text) {
  std::vector<ArtifactBinding> out;
  if (text == nullptr) return out;
  if (BindingsScanner(text).Scan(&out)) return out;
  out.clear();
  return BindingsFromJson(ParseJson(text, Json::array()));
}


namespace {

// The full snapshot of execution `id`, from `bases` or read (and kept
// there); `depth` bounds a chain of light snapshots.
Result<const Json*> BaseSnapshot(int64_t id, std::unordered_map<int64_t, Json>* bases, int depth,
                                 const std::function<Result<std::pair<Json, int64_t>>(int64_t)>& read_base) {
  if (auto it = bases->find(id); it != bases->end()) return &it->second;
  auto read = read_base(id);
  if (!read) return Error(read.error());
  Json snapshot = std::move(read->first);
  if (!snapshot.is_object()) snapshot = Json::object();
  // Hits reuse executions that ran, so a chain is one link; bounded anyway.
  if (read->second > 0 && depth < 8) {
    auto deeper = BaseSnapshot(read->second, bases, depth + 1, read_base);
    if (!deeper) return deeper;
    Json merged = **deeper;
    for (auto it = snapshot.begin(); it != snapshot.end(); ++it) merged[it.key()] = it.value();
    snapshot = std::move(merged);
  }
  return &bases->emplace(id, std::move(snapshot)).first->second;
}

}  // namespace

Status ResolveLightSnapshots(std::vector<ExecutionRecord>* executions,
                             const std::function<Result<std::pair<Json, int64_t>>(int64_t id)>& read_base) {
  std::unordered_map<int64_t, Json> bases;  // full snapshots by execution id
  for (const auto& e : *executions)
    if (e.snapshot_base == 0) bases.emplace(e.id, e.snapshot);
  for (auto& e : *executions) {
    if (e.snapshot_base <= 0) continue;
    auto base = BaseSnapshot(e.snapshot_base, &bases, 0, read_base);
    if (!base) return base.error();
    Json merged = **base;
    if (!merged.is_object()) merged = Json::object();
    for (auto it = e.snapshot.begin(); e.snapshot.is_object() && it != e.snapshot.end(); ++it)
      merged[it.key()] = it.value();
    e.snapshot = std::move(merged);
  }
  return Status::Ok();
}

namespace {

// The first `shown` of `list`, comma-separated, then ", ..." if there are more.
std::string Joined(const std::vector<std::string>& list, size_t shown) {
  std::string text;
  for (size_t i = 0; i < list.size() && i < shown; ++i) text += (i ? ", " : "") + list[i];
  if (list.size() > shown) text += ", ...";
  return text;
}

}  // namespace

Status DeleteRunNotFound(const std::string& run_id) {
  return Status::NotFound("no run '" + run_id + "' in this store (`sluice runs` lists them)");
}

Status DeleteRunNotEnded(const std::string& run_id, const std::string& phase, const std::string& pid,
                         const std::string& host) {
  return Status::FailedPrecondition("run " + run_id + " is " + phase + " (process " + pid + " on host '" + host +
                                    "'); only finished runs are deleted: cancel it, or let it finish (an "
                                    "interrupted run continues with `sluice resume " + run_id + "`)");
}

Status DeleteRunReused(const std::string& run_id, const std::vector<std::string>& reusers) {
  const bool many = reusers.size() > 1;
  return Status::FailedPrecondition("run " + run_id + " is kept: cached steps of run" + (many ? "s " : " ") +
                                    Joined(reusers, 3) + " reuse its outputs, and their lineage leads to it; "
                                    "delete " + (many ? "those runs" : "that run") + " first");
}

Status DeleteRunServing(const std::string& run_id, const std::vector<std::string>& services) {
  return Status::FailedPrecondition("run " + run_id + " is kept: it deployed or produced what service" +
                                    (services.size() > 1 ? "s " : " ") + Joined(services, 3) +
                                    " serves now (`sluice lineage --deployed` follows it)");
}

}  // namespace sluice
