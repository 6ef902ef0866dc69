#pragma once
// Text forms of points in time shared by the API, the CLI's JSON output and
// OpenLineage events.

#include <chrono>
#include <string>

namespace sluice {

// `t` in UTC as ISO 8601 / RFC 3339 with milliseconds, rounded down (also
// before 1970): "2026-11-25T15:30:12.345Z".
std::string IsoTime(std::chrono::system_clock::time_point t);

}  // namespace sluice
