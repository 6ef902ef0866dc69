#pragma once
// Cron schedules with a time zone, for periodic retraining.
//
// Syntax: the standard five fields "minute hour day-of-month month
// day-of-week" with `*`, lists (`1,15`), ranges (`1-5`), steps (`*/15`,
// `10-50/20`), month and weekday names (JAN-DEC, SUN-SAT; 7 is also Sunday),
// and the macros @yearly (@annually), @monthly, @weekly, @daily (@midnight),
// @hourly. When both day-of-month and day-of-week are restricted, a day
// matches if either matches (Vixie cron, Kubernetes CronJob).
//
// Daylight-saving time follows Vixie cron and cronie:
//  - A schedule with a fixed minute and hour ("30 2 * * *") fires once per
//    matching local day: at the first occurrence of a repeated local time,
//    and at the moment the clocks jump forward when the local time does not
//    exist that day.
//  - Any other schedule ("*/15 * * * *") fires at every real instant whose
//    local wall time matches, so a repeated hour runs twice and a skipped
//    hour runs not at all.
//
// Time zones come from the system tz database (/usr/share/zoneinfo) through
// Howard Hinnant's date/tz library (Debian's libhowardhinnant-date-dev).

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace date {
class time_zone;
}

namespace sluice {

using SysSeconds = std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>;

class CronSchedule {
 public:
  // Parses `expression` for time zone `tz_name` ("UTC", "Europe/Amsterdam").
  // Errors (kInvalidArgument) name the field and what is wrong, e.g.
  // "cron '61 * * * *': minute field: value 61 out of range 0-59".
  static Result<CronSchedule> Parse(std::string_view expression, std::string_view tz_name);

  // The first firing time strictly after `after`, or nullopt if none falls
  // within the next eight years (e.g. "0 0 30 2 *").
  std::optional<SysSeconds> Next(SysSeconds after) const;

  const std::string& expression() const { return expression_; }
  const std::string& time_zone_name() const { return tz_name_; }

 private:
  CronSchedule() = default;

  bool DayMatches(int day_of_month, int month, int weekday) const;

  std::string expression_;
  std::string tz_name_;
  const date::time_zone* zone_ = nullptr;  // owned by the tz database
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> weekdays_;        // 0 = Sunday
  bool dom_restricted_ = false;
  bool dow_restricted_ = false;
  bool fixed_time_ = false;        // one minute and one hour
};

}  // namespace sluice
