#include "executors/kubernetes/api/objects.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>

namespace sluice::k8s {

using Json = nlohmann::json;

namespace {

// FNV-1a 64: stable across platforms and versions, enough to separate names.
std::string ShortHash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 8);
}

std::string TrimDashes(std::string s) {
  while (!s.empty() && (s.back() == '-' || s.back() == '.' || s.back() == '_')) s.pop_back();
  return s;
}

}  // namespace

// Lower-case [a-z0-9-], runs of anything else collapsed to one '-', no '-' at
// the ends.
std::string DnsPart(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char l = static_cast<char>(std::tolower(c));
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9')) {
      out += l;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string ObjectName(const std::string& run_id, const std::string& instance, int attempt,
                       size_t max_length) {
  std::string run = DnsPart(run_id);
  std::string inst = DnsPart(instance);
  std::string suffix = "-a" + std::to_string(attempt);
  std::string core = run + "-" + inst;
  bool lossy = run != run_id || inst != instance || run.empty() || inst.empty();
  // DNS-1035 (services of TFJob/PyTorchJob pods): start with a letter.
  if (core.empty() || !(core[0] >= 'a' && core[0] <= 'z')) core = "s" + core;
  if (!lossy && core.size() + suffix.size() <= max_length) return core + suffix;
  std::string hash = "-" + ShortHash(run_id + "\n" + instance);
  size_t room = max_length - suffix.size() - hash.size();
  if (core.size() > room) core = core.substr(0, room);
  core = TrimDashes(core);
  return core + hash + suffix;
}

std::string LabelValue(const std::string& value) {
  if (value.empty()) return value;
  std::string out;
  for (unsigned char c : value) {
    out += (std::isalnum(c) || c == '-' || c == '_' || c == '.') ? static_cast<char>(c) : '-';
  }
  bool changed = out != value || out.size() > 63 || !std::isalnum(static_cast<unsigned char>(out.front())) ||
                 !std::isalnum(static_cast<unsigned char>(out.back()));
  if (!changed) return out;
  std::string hash = ShortHash(value);
  out = out.substr(0, std::min<size_t>(out.size(), 63 - hash.size() - 1));
  while (!out.empty() && !std::isalnum(static_cast<unsigned char>(out.front()))) out.erase(0, 1);
  out = TrimDashes(out);
  return out.empty() ? hash : out + "-" + hash;
}

std::string RunSelector(const std::string& run_id) {
  return std::string(kLabelRun) + "=" + LabelValue(run_id);
}

std::string BarePodSelector(const std::string& run_id) {
  std::string object = std::string(kLabelObject) + "=pod";
  if (run_id.empty()) return "app.kubernetes.io/managed-by=sluice," + object;
  return RunSelector(run_id) + "," + object;
}

PodExit ExitFromPods(const std::vector<Json>& pods) {
  PodExit out;
  for (const auto& pod : pods) {
    if (!pod.contains("status") || !pod["status"].contains("containerStatuses")) continue;
    for (const auto& cs : pod["status"]["containerStatuses"]) {
      if (!cs.contains("state") || !cs["state"].contains("terminated")) continue;
      const Json& t = cs["state"]["terminated"];
      int code = t.value("exitCode", 0);
      if (code == 0) continue;
      out.exit_code = code;
      out.description = "pod " + pod["metadata"].value("name", "") + " container " +
                        cs.value("name", "") + ": exit " + std::to_string(code);
      std::string reason = t.value("reason", "");
      if (!reason.empty()) out.description += " (" + reason + ")";
      return out;
    }
  }
  return out;
}

std::string ClusterEnded(const Json& pod) {
  if (!pod.contains("status") || !pod["status"].is_object()) return "";
  const Json& status = pod["status"];
  auto text = [](const Json& holder, const std::string& fallback) {
    const std::string reason = holder.value("reason", fallback), message = holder.value("message", "");
    return reason + (message.empty() ? "" : ": " + message);
  };
  const std::string reason = status.value("reason", "");
  if (reason == "DeadlineExceeded") return "";
  if (!reason.empty()) return text(status, "");
  if (status.contains("conditions") && status["conditions"].is_array())
    for (const auto& c : status["conditions"])
      if (c.is_object() && c.value("type", "") == "DisruptionTarget" && c.value("status", "") == "True")
        return text(c, "DisruptionTarget");
  return "";
}

}  // namespace sluice::k8s
