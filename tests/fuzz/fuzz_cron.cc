// Fuzz target: cron schedules (engine/server/cron.h). The first line of the
// input is the expression, the second (optional) the time zone; a schedule
// that parses is asked for its next firings, as `sluice serve` does.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/server/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string_view tz;
  if (size_t nl = text.find('\n'); nl != std::string_view::npos) {
    tz = text.substr(nl + 1);
    text = text.substr(0, nl);
  }
  auto schedule = sluice::CronSchedule::Parse(text, tz);
  if (!schedule) return 0;
  // 2026-03-29T00:30:00Z: a daylight-saving change in Europe that night.
  sluice::SysSeconds t{std::chrono::seconds{1774744200}};
  for (int i = 0; i < 3; ++i) {
    auto next = schedule->Next(t);
    if (!next) break;
    t = *next;
  }
  return 0;
}
