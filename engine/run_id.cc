#include "engine/run_id.h"

#include <cstdio>
#include <ctime>
#include <random>
#include <string>

namespace sluice {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// The id as it can be shown in a message: bytes outside printable ASCII as
// \xNN, at most 40 characters of it.
std::string Quoted(std::string_view id) {
  constexpr size_t kShown = 40;
  std::string out;
  for (size_t i = 0; i < id.size() && i < kShown; ++i) {
    unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (id.size() > kShown) out += "... (" + std::to_string(id.size()) + " characters)";
  return "'" + out + "'";
}

}  // namespace

Status ValidateRunId(std::string_view id) {
  bool ok = !id.empty() && id.size() <= kMaxRunIdLength && IsAlnum(id[0]) &&
            id.find("..") == std::string_view::npos;
  for (size_t i = 1; ok && i < id.size(); ++i)
    ok = IsAlnum(id[i]) || id[i] == '.' || id[i] == '_' || id[i] == '-';
  if (ok) return Status::Ok();
  return Status::InvalidArgument("invalid run id " + Quoted(id) + ": a run id is 1-" +
                                 std::to_string(kMaxRunIdLength) +
                                 " characters from A-Z a-z 0-9 . _ -, starts with a letter or "
                                 "digit and has no '..'");
}

std::string NewRunId(std::string_view pipeline, std::chrono::system_clock::time_point now) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", static_cast<unsigned>(rng() & 0xffff));
  return std::string(pipeline.empty() ? "run" : pipeline) + "-" + stamp + "-" + suffix;
}

}  // namespace sluice
