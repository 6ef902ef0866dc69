#include "engine/server/cron.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

#include <date/date.h>
#include <date/tz.h>

#include "engine/text.h"

namespace sluice {
namespace {

struct FieldDef {
  const char* name;
  int min;
  int max;
  const char* const* names;  // index 0 maps to `min`, or nullptr
};

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDayNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

// Parses one value: a number or (for months/weekdays) a name.
Result<int> ParseValue(std::string_view text, const FieldDef& def) {
  if (def.names != nullptr) {
    std::string up = Upper(text);
    int count = def.max - def.min + 1;
    if (def.min == 0 && def.max == 7) count = 7;  // day-of-week: 7 aliases Sunday
    for (int i = 0; i < count; ++i)
      if (up == def.names[i]) return def.min + i;
  }
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
    return Error(Status::InvalidArgument("'" + std::string(text) + "' is not a number" +
                                         (def.names ? " or a name" : "")));
  if (value < def.min || value > def.max)
    return Error(Status::InvalidArgument("value " + std::to_string(value) + " out of range " +
                                         std::to_string(def.min) + "-" +
                                         std::to_string(def.max)));
  return value;
}

// Parses a whole field into the set of matching values. `restricted` is set
// false for a bare "*" (or "?").
Result<std::vector<bool>> ParseField(std::string_view field, const FieldDef& def,
                                     bool* restricted) {
  std::vector<bool> set(def.max + 1, false);
  *restricted = !(field == "*" || field == "?");
  for (std::string_view part : Split(field, ',')) {
    if (part.empty()) return Error(Status::InvalidArgument("empty list element"));
    int step = 1;
    std::string_view range = part;
    if (size_t slash = part.find('/'); slash != std::string_view::npos) {
      std::string_view step_text = part.substr(slash + 1);
      auto [ptr, ec] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
      if (ec != std::errc() || ptr != step_text.data() + step_text.size() || step <= 0)
        return Error(Status::InvalidArgument("step '" + std::string(step_text) +
                                             "' is not a positive number"));
      range = part.substr(0, slash);
    }
    int lo = def.min, hi = def.max;
    if (def.min == 0 && def.max == 7) hi = 6;  // "*" in day-of-week is 0-6
    if (range != "*" && range != "?") {
      if (size_t dash = range.find('-'); dash != std::string_view::npos) {
        auto a = ParseValue(range.substr(0, dash), def);
        if (!a) return Error(a.error());
        auto b = ParseValue(range.substr(dash + 1), def);
        if (!b) return Error(b.error());
        lo = *a;
        hi = *b;
        if (lo > hi)
          return Error(Status::InvalidArgument("range " + std::string(range) +
                                               " runs backwards"));
      } else {
        auto v = ParseValue(range, def);
        if (!v) return Error(v.error());
        lo = *v;
        // "5/15" means 5-max/15, as in Vixie cron.
        hi = (part.find('/') != std::string_view::npos) ? def.max : *v;
      }
    }
    for (int v = lo; v <= hi; v += step) {
      set[v] = true;
      if (hi - v < step) break;  // past `hi`; v + step could overflow an int
    }
  }
  return set;
}

std::string_view ExpandMacro(std::string_view expr) {
  if (expr == "@yearly" || expr == "@annually") return "0 0 1 1 *";
  if (expr == "@monthly") return "0 0 1 * *";
  if (expr == "@weekly") return "0 0 * * 0";
  if (expr == "@daily" || expr == "@midnight") return "0 0 * * *";
  if (expr == "@hourly") return "0 * * * *";
  return expr;
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view expression, std::string_view tz_name) {
  CronSchedule s;
  s.expression_ = std::string(expression);
  s.tz_name_ = std::string(tz_name.empty() ? "UTC" : tz_name);
  auto fail = [&](const std::string& what) {
    return Error(Status::InvalidArgument("cron '" + s.expression_ + "': " + what));
  };
  try {
    s.zone_ = date::locate_zone(s.tz_name_);
  } catch (const std::exception&) {
    return Error(Status::InvalidArgument(
        "unknown time zone '" + s.tz_name_ +
        "' (use an IANA name such as UTC or Europe/Amsterdam; see /usr/share/zoneinfo)"));
  }

  std::string_view text = Trim(expression);
  if (!text.empty() && text.front() == '@') {
    std::string_view expanded = ExpandMacro(text);
    if (expanded == text)
      return fail("unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, "
                  "@midnight or @hourly)");
    text = expanded;
  }
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) fields.push_back(text.substr(start, i - start));
  }
  if (fields.size() != 5)
    return fail("expected 5 fields (minute hour day-of-month month day-of-week), got " +
                std::to_string(fields.size()));

  static const FieldDef kDefs[5] = {
      {"minute", 0, 59, nullptr},
      {"hour", 0, 23, nullptr},
      {"day-of-month", 1, 31, nullptr},
      {"month", 1, 12, kMonthNames},
      {"day-of-week", 0, 7, kDayNames},
  };
  std::vector<bool> sets[5];
  bool restricted[5] = {};
  for (int f = 0; f < 5; ++f) {
    auto set = ParseField(fields[f], kDefs[f], &restricted[f]);
    if (!set) return fail(std::string(kDefs[f].name) + " field: " + set.error().message());
    sets[f] = std::move(*set);
  }
  for (int v = 0; v < 60; ++v) s.minutes_[v] = sets[0][v];
  for (int v = 0; v < 24; ++v) s.hours_[v] = sets[1][v];
  for (int v = 1; v <= 31; ++v) s.days_of_month_[v] = sets[2][v];
  for (int v = 1; v <= 12; ++v) s.months_[v] = sets[3][v];
  for (int v = 0; v <= 7; ++v)
    if (sets[4][v]) s.weekdays_[v % 7] = true;
  s.dom_restricted_ = restricted[2];
  s.dow_restricted_ = restricted[4];
  s.fixed_time_ = s.minutes_.count() == 1 && s.hours_.count() == 1;
  return s;
}

bool CronSchedule::DayMatches(int day_of_month, int month, int weekday) const {
  if (!months_[month]) return false;
  bool dom = days_of_month_[day_of_month];
  bool dow = weekdays_[weekday];
  if (dom_restricted_ && dow_restricted_) return dom || dow;
  return dom && dow;
}

std::optional<SysSeconds> CronSchedule::Next(SysSeconds after) const {
  using namespace std::chrono;
  using date::local_days;
  using date::local_seconds;

  // Start one local day early: a repeated hour can map an earlier local day's
  // times to instants after `after`.
  auto local_after = zone_->to_local(after);
  auto day = date::floor<date::days>(local_after) - date::days{1};
  const auto last_day = day + date::days{366 * 8};
  std::vector<SysSeconds> candidates;
  for (; day <= last_day; day += date::days{1}) {
    date::year_month_day ymd{day};
    date::weekday wd{day};
    if (!DayMatches(static_cast<int>(static_cast<unsigned>(ymd.day())),
                    static_cast<int>(static_cast<unsigned>(ymd.month())),
                    static_cast<int>(wd.c_encoding())))
      continue;
    candidates.clear();
    for (int h = 0; h < 24; ++h) {
      if (!hours_[h]) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minutes_[m]) continue;
        local_seconds lt = local_days(day) + hours{h} + minutes{m};
        date::local_info info = zone_->get_info(lt);
        switch (info.result) {
          case date::local_info::unique:
            candidates.push_back(SysSeconds(lt.time_since_epoch() - info.first.offset));
            break;
          case date::local_info::nonexistent:
            // Clocks jumped over this time: a fixed-time job runs at the jump.
            if (fixed_time_) candidates.push_back(SysSeconds(info.second.begin));
            break;
          case date::local_info::ambiguous:
            candidates.push_back(SysSeconds(lt.time_since_epoch() - info.first.offset));
            if (!fixed_time_)
              candidates.push_back(SysSeconds(lt.time_since_epoch() - info.second.offset));
            break;
        }
      }
    }
    std::sort(candidates.begin(), candidates.end());
    for (const auto& c : candidates)
      if (c > after) return c;
  }
  return std::nullopt;
}

}  // namespace sluice
