#include "engine/cli/output.h"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <regex>

#include <CLI/CLI.hpp>

#include "dsl/suggest.h"
#include "engine/plan.h"
#include "engine/time_format.h"

namespace sluice::cli {

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kAlreadyExists: return kExitUsage;
    case StatusCode::kCancelled: return kExitCancelled;
    default: return kExitSystem;
  }
}

void PrintError(const std::string& message) {
  std::cerr << "sluice: error: " << message << "\n";
}

int Fail(const Status& status) {
  PrintError(status.message());
  return ExitCodeFor(status);
}

std::string Table::ToString() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

namespace {

std::tm UtcTm(TimePoint t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return tm;
}

}  // namespace

std::string FormatTime(TimePoint t) {
  std::tm tm = UtcTm(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string FormatIsoTime(TimePoint t) { return IsoTime(t); }

Json IsoTimeOrNull(const std::optional<TimePoint>& t) {
  return t ? Json(FormatIsoTime(*t)) : Json(nullptr);
}

int64_t ElapsedMillis(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end) {
  if (!start) return -1;
  TimePoint stop = end ? *end : std::chrono::system_clock::now();
  return std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(stop - *start).count());
}

std::string ElapsedText(const std::optional<TimePoint>& start, const std::optional<TimePoint>& end) {
  int64_t ms = ElapsedMillis(start, end);
  if (ms < 0) return "-";
  return FormatDuration(Duration(ms));
}

std::string ShortDigest(const std::string& digest) {
  size_t colon = digest.find(':');
  size_t keep = (colon == std::string::npos ? 0 : colon + 1) + 12;
  return digest.substr(0, std::min(keep, digest.size()));
}

Result<RunRecord> FindRun(Store& store, const std::string& name) {
  if (name == "latest") {
    RunFilter filter;
    filter.limit = 1;
    auto runs = store.ListRuns(filter);
    if (!runs) return Error(runs.error());
    if (runs->empty()) return Error(Status::NotFound("there are no runs in this store yet"));
    return std::move(runs->front());
  }
  auto run = store.GetRun(name);
  if (run || run.error().code() != StatusCode::kNotFound) return run;
  // A typo in a run id: name the closest of the recent runs.
  RunFilter recent;
  recent.limit = 1000;
  std::vector<std::string> ids;
  if (auto runs = store.ListRuns(recent))
    for (const RunRecord& r : *runs) ids.push_back(r.id);
  std::string hint = dsl::DidYouMean(name, ids);
  if (hint.empty()) return run;
  return Error(Status::NotFound(run.error().message() + hint));
}

std::string ResolveStateDir(const std::string& store_flag) {
  std::error_code ec;
  std::filesystem::path p = store_flag.empty() || IsPostgresUrl(store_flag) ? ".sluice" : store_flag;
  std::filesystem::path abs = std::filesystem::absolute(p, ec);
  std::string out = (ec ? p : abs).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string StoreLocation(const std::string& store_flag) {
  return IsPostgresUrl(store_flag) ? store_flag : ResolveStateDir(store_flag);
}

Result<std::map<std::string, std::string>> ParseParamFlags(const std::vector<std::string>& flags) {
  std::map<std::string, std::string> out;
  for (const auto& p : flags) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Error(Status::InvalidArgument("-p expects name=value, got '" + p + "'"));
    }
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

Result<StorePtr> OpenExisting(const std::string& store_flag) {
  StoreOptions options;
  options.create_if_missing = false;
  return OpenStore(StoreLocation(store_flag), options);
}

Result<OpenedRun> OpenRun(const std::string& store_flag, const std::string& run_name) {
  auto store = OpenExisting(store_flag);
  if (!store) return Error(store.error());
  auto run = FindRun(**store, run_name);
  if (!run) return Error(run.error());
  return OpenedRun{std::move(*store), std::move(*run)};
}

CLI::Option* AddOutputOption(CLI::App* cmd, std::string* format, const std::vector<std::string>& formats) {
  std::string values;
  for (const auto& f : formats) values += (values.empty() ? "" : "|") + f;
  return cmd->add_option("-o,--output,--format", *format, "Output format: " + values + " (default " + formats.front() + ")")
      ->type_name("FORMAT")
      ->check(CLI::IsMember(formats));
}

namespace {

// A string YAML would read back as the same string without quotes.
bool PlainYamlSafe(const std::string& s) {
  static const std::regex kPlain("[A-Za-z_/][A-Za-z0-9_./@+-]*( [A-Za-z0-9_./@+()-]+)*");
  static const std::regex kReserved("(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|"
                                    "on|On|ON|off|Off|OFF|null|Null|NULL|~)");
  return std::regex_match(s, kPlain) && !std::regex_match(s, kReserved);
}

std::string YamlScalar(const Json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    // A JSON string literal is a valid YAML double-quoted scalar.
    return PlainYamlSafe(s) ? s : v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  if (v.is_object()) return "{}";  // only reached for empty containers
  if (v.is_array()) return "[]";
  return v.dump();
}

bool IsBlock(const Json& v) { return (v.is_object() || v.is_array()) && !v.empty(); }

void EmitYaml(const Json& v, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  if (v.is_object()) {
    for (const auto& [key, item] : v.items()) {
      *out += pad + YamlScalar(Json(key)) + ":";
      if (IsBlock(item)) {
        *out += "\n";
        EmitYaml(item, item.is_array() ? indent : indent + 2, out);
      } else {
        *out += " " + YamlScalar(item) + "\n";
      }
    }
    return;
  }
  for (const auto& item : v) {
    if (!IsBlock(item)) {
      *out += pad + "- " + YamlScalar(item) + "\n";
      continue;
    }
    // The item's block at indent + 2, its first line's indent replaced by "- ".
    std::string child;
    EmitYaml(item, indent + 2, &child);
    *out += pad + "- " + child.substr(indent + 2);
  }
}

}  // namespace

std::string ToYaml(const Json& value) {
  if (!IsBlock(value)) return YamlScalar(value) + "\n";
  std::string out;
  EmitYaml(value, 0, &out);
  return out;
}

void PrintRecords(const Json& value, const std::string& format) {
  if (format == "yaml") {
    std::cout << ToYaml(value);
  } else {
    std::cout << value.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
  }
}

}  // namespace sluice::cli
