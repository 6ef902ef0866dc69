#include "engine/time_format.h"

#include <cstdint>
#include <cstdio>
#include <ctime>

namespace sluice {

std::string IsoTime(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  // Rounded down, so 1969-12-31T23:59:59.999Z comes before the epoch.
  const int64_t ms = floor<milliseconds>(t.time_since_epoch()).count();
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    secs -= 1;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(frac));
  return buf;
}

}  // namespace sluice
