#include "engine/quantity.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

namespace sluice {
namespace {

// Reads "123" or "1.5" at s[i...]; advances i. False when there is no number.
bool ReadNumber(std::string_view s, size_t& i, double* value) {
  size_t start = i;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) {
    i = start;
    return false;
  }
  *value = std::strtod(std::string(s.substr(start, i - start)).c_str(), nullptr);
  return true;
}

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  auto bad = [&]() {
    return Error(Status::InvalidArgument("invalid duration '" + std::string(text) +
                                         "'; write a number with a unit (ms, s, m, h, d), e.g. 30s, 10m, 1h30m"));
  };
  if (text == "0") return Duration(0);
  if (text.empty()) return bad();
  if (text.find_first_not_of("0123456789.") == std::string_view::npos)
    return Error(Status::InvalidArgument("invalid duration '" + std::string(text) + "': add a unit, e.g. '" +
                                         std::string(text) + "s' or '" + std::string(text) + "m'"));
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    double v;
    if (!ReadNumber(text, i, &v)) return bad();
    double unit;
    if (text.substr(i, 2) == "ms") {
      unit = 1;
      i += 2;
    } else if (i < text.size() && text[i] == 's') {
      unit = 1000;
      ++i;
    } else if (i < text.size() && text[i] == 'm') {
      unit = 60 * 1000.0;
      ++i;
    } else if (i < text.size() && text[i] == 'h') {
      unit = 3600 * 1000.0;
      ++i;
    } else if (i < text.size() && text[i] == 'd') {
      unit = 86400 * 1000.0;
      ++i;
    } else {
      return bad();
    }
    total_ms += v * unit;
  }
  if (total_ms > 1e15) return bad();
  return Duration(static_cast<int64_t>(std::llround(total_ms)));
}

Result<int64_t> ParseCpu(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Error(Status::InvalidArgument("invalid cpu quantity '" + std::string(text) + "'" + why +
                                         "; write cores (1, 0.5, \"2\") or millicores (\"500m\")"));
  };
  size_t i = 0;
  double v;
  if (!ReadNumber(text, i, &v)) return bad(text.starts_with("-") ? ": it cannot be negative" : "");
  double millis;
  if (i == text.size()) {
    millis = v * 1000;
  } else if (text.substr(i) == "m") {
    if (text.find('.') != std::string_view::npos) return bad(": millicores are whole numbers");
    millis = v;
  } else {
    return bad("");
  }
  if (std::fabs(millis - std::round(millis)) > 1e-6) return bad(": the smallest unit is 1m (0.001 cores)");
  return static_cast<int64_t>(std::llround(millis));
}

Result<int64_t> ParseMemory(std::string_view text) {
  std::string hint;
  size_t i = 0;
  double v;
  bool has_number = ReadNumber(text, i, &v);
  std::string_view suffix = has_number ? text.substr(i) : std::string_view();
  double mult = 0;
  if (has_number) {
    static const struct {
      const char* s;
      double m;
    } kUnits[] = {{"", 1},
                  {"Ki", 1024.0},
                  {"Mi", 1024.0 * 1024},
                  {"Gi", 1024.0 * 1024 * 1024},
                  {"Ti", 1024.0 * 1024 * 1024 * 1024},
                  {"Pi", 1024.0 * 1024 * 1024 * 1024 * 1024},
                  {"Ei", 1024.0 * 1024 * 1024 * 1024 * 1024 * 1024},
                  {"k", 1e3},
                  {"M", 1e6},
                  {"G", 1e9},
                  {"T", 1e12},
                  {"P", 1e15},
                  {"E", 1e18}};
    for (const auto& u : kUnits)
      if (suffix == u.s) mult = u.m;
    if (mult == 0) {
      if (suffix == "m")
        hint = "; 'm' means thousandths of a byte; did you mean '" + std::string(text.substr(0, i)) + "Mi'?";
      else if (suffix == "K" || suffix == "KB" || suffix == "kb" || suffix == "KiB")
        hint = "; did you mean '" + std::string(text.substr(0, i)) + "Ki' (1024 bytes) or '" +
               std::string(text.substr(0, i)) + "k' (1000 bytes)?";
      else if (suffix == "MB" || suffix == "Mb" || suffix == "MiB" || suffix == "mb")
        hint = "; did you mean '" + std::string(text.substr(0, i)) + "Mi' (2^20 bytes) or '" +
               std::string(text.substr(0, i)) + "M' (10^6 bytes)?";
      else if (suffix == "GB" || suffix == "Gb" || suffix == "GiB" || suffix == "gb" || suffix == "g")
        hint = "; did you mean '" + std::string(text.substr(0, i)) + "Gi' (2^30 bytes) or '" +
               std::string(text.substr(0, i)) + "G' (10^9 bytes)?";
    }
  } else if (text.starts_with("-")) {
    hint = ": it cannot be negative";
  }
  if (mult == 0) {
    if (hint.empty() || hint[0] != ';') hint += "; write bytes with a suffix, e.g. 512Mi, 1Gi, 1G";
    return Error(Status::InvalidArgument("invalid memory quantity '" + std::string(text) + "'" + hint));
  }
  double bytes = std::ceil(v * mult);
  if (bytes > 9e18)
    return Error(Status::InvalidArgument("memory quantity '" + std::string(text) + "' is too large"));
  return static_cast<int64_t>(bytes);
}

}  // namespace sluice
