#include "engine/server/cron.h"

#include <date/date.h>
#include <gtest/gtest.h>

#include <sstream>
#include <vector>

namespace sluice {
namespace {

SysSeconds At(const std::string& iso_utc) {
  std::istringstream in(iso_utc);
  SysSeconds t;
  in >> date::parse("%FT%TZ", t);
  EXPECT_FALSE(in.fail()) << iso_utc;
  return t;
}

std::string Iso(SysSeconds t) { return date::format("%FT%TZ", t); }

// The next `count` firing times after `after`, as ISO strings.
std::vector<std::string> Firings(const std::string& expr, const std::string& tz,
                                 const std::string& after, int count) {
  auto s = CronSchedule::Parse(expr, tz);
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().ToString());
  std::vector<std::string> out;
  if (!s) return out;
  SysSeconds t = At(after);
  for (int i = 0; i < count; ++i) {
    auto next = s->Next(t);
    if (!next) break;
    out.push_back(Iso(*next));
    t = *next;
  }
  return out;
}

std::string ParseError(const std::string& expr, const std::string& tz = "UTC") {
  auto s = CronSchedule::Parse(expr, tz);
  return s ? "" : s.error().message();
}

TEST(CronTest, EveryFifteenMinutes) {
  EXPECT_EQ(Firings("*/15 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
            (std::vector<std::string>{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z",
                                      "2026-01-01T00:45:00Z"}));
}

TEST(CronTest, WeekdaysInATimeZone) {
  // Saturday noon UTC; next weekday 09:00 in Amsterdam (CET, UTC+1) is Monday.
  EXPECT_EQ(Firings("0 9 * * MON-FRI", "Europe/Amsterdam", "2026-11-28T12:00:00Z", 2),
            (std::vector<std::string>{"2026-11-30T08:00:00Z", "2026-12-01T08:00:00Z"}));
}

TEST(CronTest, FixedTimeInSkippedHourRunsAtTheJump) {
  // 2026-03-29: Amsterdam jumps from 02:00 CET to 03:00 CEST (01:00 UTC).
  EXPECT_EQ(Firings("30 2 * * *", "Europe/Amsterdam", "2026-03-28T12:00:00Z", 2),
            (std::vector<std::string>{"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}));
}

TEST(CronTest, FixedTimeInRepeatedHourRunsOnce) {
  // 2026-10-25: 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET).
  EXPECT_EQ(Firings("30 2 * * *", "Europe/Amsterdam", "2026-10-24T12:00:00Z", 2),
            (std::vector<std::string>{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}));
}

TEST(CronTest, WildcardHourRunsTwiceInRepeatedHour) {
  EXPECT_EQ(Firings("30 * * * *", "Europe/Amsterdam", "2026-10-25T00:00:00Z", 3),
            (std::vector<std::string>{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z",
                                      "2026-10-25T02:30:00Z"}));
}

TEST(CronTest, WildcardHourSkipsMissingHour) {
  // 01:30 CET = 00:30 UTC; 02:30 does not exist; 03:30 CEST = 01:30 UTC.
  EXPECT_EQ(Firings("30 * * * *", "Europe/Amsterdam", "2026-03-29T00:00:00Z", 2),
            (std::vector<std::string>{"2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"}));
}

TEST(CronTest, NewYorkDaily) {
  // EST is UTC-5 until 2026-03-08 02:00, then EDT UTC-4.
  EXPECT_EQ(Firings("@daily", "America/New_York", "2026-03-07T12:00:00Z", 2),
            (std::vector<std::string>{"2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"}));
}

TEST(CronTest, DayOfMonthOrDayOfWeek) {
  // Both restricted: the 13th OR any Friday (Vixie cron).
  EXPECT_EQ(Firings("0 0 13 * FRI", "UTC", "2026-11-01T00:00:00Z", 3),
            (std::vector<std::string>{"2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z",
                                      "2026-11-20T00:00:00Z"}));
}

TEST(CronTest, Macros) {
  EXPECT_EQ(Firings("@hourly", "UTC", "2026-11-25T10:20:00Z", 1),
            (std::vector<std::string>{"2026-11-25T11:00:00Z"}));
  EXPECT_EQ(Firings("@weekly", "UTC", "2026-11-25T10:20:00Z", 1),
            (std::vector<std::string>{"2026-11-29T00:00:00Z"}));
  EXPECT_EQ(Firings("@monthly", "UTC", "2026-11-25T10:20:00Z", 1),
            (std::vector<std::string>{"2026-12-01T00:00:00Z"}));
  EXPECT_EQ(Firings("@yearly", "UTC", "2026-11-25T10:20:00Z", 1),
            Firings("0 0 1 jan *", "UTC", "2026-11-25T10:20:00Z", 1));
}

TEST(CronTest, SundayAsSeven) {
  EXPECT_EQ(Firings("0 12 * * 7", "UTC", "2026-11-25T00:00:00Z", 1),
            (std::vector<std::string>{"2026-11-29T12:00:00Z"}));
}

TEST(CronTest, StepFromValue) {
  EXPECT_EQ(Firings("5/20 * * * *", "UTC", "2026-11-25T10:00:00Z", 3),
            (std::vector<std::string>{"2026-11-25T10:05:00Z", "2026-11-25T10:25:00Z",
                                      "2026-11-25T10:45:00Z"}));
}

TEST(CronTest, ImpossibleDateNeverFires) {
  auto s = CronSchedule::Parse("0 0 30 2 *", "UTC");
  ASSERT_TRUE(s.has_value());
  EXPECT_FALSE(s->Next(At("2026-01-01T00:00:00Z")).has_value());
}

TEST(CronTest, Errors) {
  EXPECT_EQ(ParseError("61 * * * *"), "cron '61 * * * *': minute field: value 61 out of range 0-59");
  EXPECT_EQ(ParseError("* * * *"),
            "cron '* * * *': expected 5 fields (minute hour day-of-month month day-of-week), got 4");
  EXPECT_EQ(ParseError("5-1 * * * *"), "cron '5-1 * * * *': minute field: range 5-1 runs backwards");
  EXPECT_EQ(ParseError("*/0 * * * *"), "cron '*/0 * * * *': minute field: step '0' is not a positive number");
  EXPECT_EQ(ParseError("0 0 * FOO *"), "cron '0 0 * FOO *': month field: 'FOO' is not a number or a name");
  EXPECT_EQ(ParseError("@fortnightly"),
            "cron '@fortnightly': unknown macro (use @yearly, @annually, @monthly, @weekly, "
            "@daily, @midnight or @hourly)");
  EXPECT_EQ(ParseError("* * * * *", "Mars/Olympus"),
            "unknown time zone 'Mars/Olympus' (use an IANA name such as UTC or Europe/Amsterdam; "
            "see /usr/share/zoneinfo)");
}

TEST(CronTest, StepLargerThanTheFieldFiresOnlyAtItsStart) {
  // A step near INT_MAX must not overflow while the values are collected.
  EXPECT_EQ(Firings("1/2147483647 * * * *", "UTC", "2026-11-25T10:00:00Z", 2),
            (std::vector<std::string>{"2026-11-25T10:01:00Z", "2026-11-25T11:01:00Z"}));
  EXPECT_EQ(Firings("0 0 * * 7/2147483647", "UTC", "2026-11-25T00:00:00Z", 1),
            (std::vector<std::string>{"2026-11-29T00:00:00Z"}));
  EXPECT_EQ(ParseError("*/2147483648 * * * *"),
            "cron '*/2147483648 * * * *': minute field: step '2147483648' is not a positive number");
}

}  // namespace
}  // namespace sluice
