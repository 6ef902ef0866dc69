#include "engine/server/scheduler.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <date/date.h>
#include <date/tz.h>

#include "engine/expr.h"
#include "engine/server/metrics.h"

namespace sluice::server {
namespace {

constexpr std::chrono::seconds kDefaultGrace{60};
// Bound on cron times enumerated per tick (a per-minute schedule down for a
// year is ~525k); beyond it the oldest missed times are skipped.
constexpr int kMaxEnumerated = 600000;

std::string IsoUtc(SysSeconds t) { return date::format("%FT%TZ", t); }

std::optional<SysSeconds> ParseIsoUtc(const std::string& s) {
  std::istringstream in(s);
  SysSeconds t;
  in >> date::parse("%FT%TZ", t);
  if (in.fail()) return std::nullopt;
  return t;
}

Json RunToJson(const ScheduledRun& r) {
  return Json{{"pipeline", r.pipeline}, {"run_id", r.run_id}, {"time", IsoUtc(r.time)},
              {"params", r.params}, {"trigger", r.trigger}};
}

// Writes `text` to `path` atomically and durably.
Status WriteFileAtomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::FailedPrecondition("cannot write " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Status::FailedPrecondition("cannot write " + tmp + ": " + std::strerror(errno));
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::FailedPrecondition("cannot rename " + tmp + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

std::string ScheduledRunId(const std::string& pipeline, SysSeconds time) {
  return pipeline + "-cron-" + date::format("%Y%m%d-%H%M%S", time);
}

Result<Json> ScheduleScope(const std::string& pipeline, const std::string& timezone,
                           SysSeconds time) {
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(timezone);
  } catch (const std::exception&) {
    return Error(Status::InvalidArgument("unknown time zone '" + timezone +
                                         "'; use an IANA name such as UTC or Europe/Amsterdam"));
  }
  auto local = date::make_zoned(zone, time);
  auto lt = local.get_local_time();
  std::string offset = date::format("%z", local);  // +0100
  if (offset.size() == 5) offset.insert(3, ":");
  Json schedule = {
      {"time", IsoUtc(time)},
      {"date", date::format("%F", lt)},
      {"datetime", date::format("%FT%T", lt) + offset},
      {"year", date::format("%Y", lt)},
      {"month", date::format("%m", lt)},
      {"day", date::format("%d", lt)},
      {"hour", date::format("%H", lt)},
      {"minute", date::format("%M", lt)},
      {"unix", static_cast<int64_t>(time.time_since_epoch().count())},
      {"timezone", timezone},
  };
  return Json{{"schedule", schedule}, {"pipeline", {{"name", pipeline}}}};
}

Result<std::map<std::string, std::string>> RenderScheduleParams(const std::string& pipeline,
                                                                const ScheduleSpec& schedule,
                                                                SysSeconds time) {
  auto scope = ScheduleScope(pipeline, schedule.timezone, time);
  if (!scope) return Error(scope.error());
  std::map<std::string, std::string> out;
  for (const auto& [name, tmpl] : schedule.params) {
    auto text = expr::Render(tmpl.text, *scope);
    if (!text)
      return Error(Status::InvalidArgument(
          (tmpl.loc.ToString().empty() ? "" : tmpl.loc.ToString() + ": ") + "schedule param '" +
          name + "': " + text.error().message() +
          " (the scope has schedule.time, schedule.date, schedule.datetime, schedule.year, "
          "schedule.month, schedule.day, schedule.hour, schedule.minute, schedule.unix, "
          "schedule.timezone, pipeline.name)"));
    out[name] = *text;
  }
  return out;
}

Result<std::vector<CronSchedule>> ParseSchedule(const ScheduleSpec& schedule) {
  std::vector<CronSchedule> crons;
  std::string where = schedule.loc.ToString().empty() ? "" : schedule.loc.ToString() + ": ";
  if (schedule.cron.empty())
    return Error(Status::InvalidArgument(where + "schedule has no cron expression"));
  for (const std::string& expr : schedule.cron) {
    auto parsed = CronSchedule::Parse(expr, schedule.timezone);
    if (!parsed) return Error(Status::InvalidArgument(where + parsed.error().message()));
    crons.push_back(std::move(*parsed));
  }
  if (schedule.concurrency_policy != "Allow" && schedule.concurrency_policy != "Forbid" &&
      schedule.concurrency_policy != "Replace")
    return Error(Status::InvalidArgument(where + "concurrencyPolicy '" +
                                         schedule.concurrency_policy +
                                         "' is not one of Allow, Forbid, Replace"));
  if (schedule.catchup != "none" && schedule.catchup != "latest" && schedule.catchup != "all")
    return Error(Status::InvalidArgument(where + "catchup '" + schedule.catchup +
                                         "' is not one of none, latest, all"));
  return crons;
}

Scheduler::Scheduler(Clock* clock, ScheduleTarget* target, std::string state_path,
                     ServerMetrics* metrics)
    : clock_(clock), target_(target), state_path_(std::move(state_path)), metrics_(metrics) {}

Status Scheduler::Open() {
  std::lock_guard lock(mu_);
  std::ifstream in(state_path_, std::ios::binary);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    Json doc = Json::parse(ss.str(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
      return Status::InvalidArgument(state_path_ +
                                     ": scheduler state is not valid JSON; fix or remove it "
                                     "(removing it restarts every schedule from now)");
    if (doc.contains("last") && doc["last"].is_object())
      for (const auto& [name, value] : doc["last"].items())
        if (value.is_string())
          if (auto t = ParseIsoUtc(value.get<std::string>())) last_[name] = *t;
    if (doc.contains("pending") && doc["pending"].is_array())
      for (const auto& p : doc["pending"]) {
        if (!p.is_object()) continue;
        ScheduledRun run;
        run.pipeline = p.value("pipeline", "");
        run.run_id = p.value("run_id", "");
        run.trigger = p.value("trigger", "cron");
        if (auto t = ParseIsoUtc(p.value("time", ""))) run.time = *t;
        if (p.contains("params") && p["params"].is_object())
          for (const auto& [k, v] : p["params"].items())
            if (v.is_string()) run.params[k] = v.get<std::string>();
        if (!run.pipeline.empty() && !run.run_id.empty()) pending_.push_back(std::move(run));
      }
  }
  // Runs a crash left between "decided" and "launched".
  std::vector<ScheduledRun> pending = std::move(pending_);
  pending_.clear();
  for (ScheduledRun& run : pending) {
    Status s = target_->Launch(run);
    if (!s.ok() && s.code() != StatusCode::kAlreadyExists) pending_.push_back(run);
  }
  return SaveLocked();
}

Status Scheduler::SaveLocked() {
  Json last = Json::object();
  for (const auto& [name, t] : last_) last[name] = IsoUtc(t);
  Json pending = Json::array();
  for (const auto& run : pending_) pending.push_back(RunToJson(run));
  Json doc = {{"version", 1}, {"last", last}, {"pending", pending}};
  return WriteFileAtomic(state_path_, doc.dump(2) + "\n");
}

Status Scheduler::SetSchedule(const std::string& pipeline, const ScheduleSpec& schedule) {
  auto crons = ParseSchedule(schedule);
  if (!crons) return crons.error();
  std::lock_guard lock(mu_);
  entries_[pipeline] = Entry{schedule, std::move(*crons)};
  return Status::Ok();
}

void Scheduler::RemoveSchedule(const std::string& pipeline) {
  std::lock_guard lock(mu_);
  entries_.erase(pipeline);
}

std::vector<std::string> Scheduler::Pipelines() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, e] : entries_) names.push_back(name);
  return names;
}

SysSeconds Scheduler::NowSeconds() const {
  return std::chrono::floor<std::chrono::seconds>(clock_->Now());
}

std::optional<SysSeconds> Scheduler::NextAfter(const Entry& entry, SysSeconds t) const {
  std::optional<SysSeconds> best;
  for (const CronSchedule& c : entry.crons) {
    auto n = c.Next(t);
    if (n && (!best || *n < *best)) best = n;
  }
  return best;
}

std::optional<SysSeconds> Scheduler::NextWakeup() const {
  std::lock_guard lock(mu_);
  std::optional<SysSeconds> best;
  SysSeconds now = NowSeconds();
  for (const auto& [name, entry] : entries_) {
    auto it = last_.find(name);
    SysSeconds from = it == last_.end() ? now : std::max(it->second, now - std::chrono::seconds(1));
    auto n = NextAfter(entry, from);
    if (n && (!best || *n < *best)) best = n;
  }
  return best;
}

std::optional<SysSeconds> Scheduler::LastScheduled(const std::string& pipeline) const {
  std::lock_guard lock(mu_);
  auto it = last_.find(pipeline);
  if (it == last_.end()) return std::nullopt;
  return it->second;
}

void Scheduler::LaunchLocked(const Entry& entry, ScheduledRun run, SysSeconds now,
                             std::vector<ScheduleDecision>* out) {
  ScheduleDecision d{run.pipeline, run.time, "", run.run_id, ""};
  auto count = [&](const std::string& action) {
    if (metrics_) metrics_->scheduled_runs->Inc({{"pipeline", run.pipeline}, {"outcome", action}});
  };
  const std::string& policy = entry.spec.concurrency_policy;
  if (policy != "Allow") {
    std::vector<std::string> active = target_->ActiveScheduledRuns(run.pipeline);
    active.erase(std::remove(active.begin(), active.end(), run.run_id), active.end());
    if (!active.empty() && policy == "Forbid") {
      d.action = "skipped_forbid";
      d.message = "concurrencyPolicy Forbid: " + active.front() + " has not finished";
      count(d.action);
      out->push_back(d);
      return;
    }
    if (policy == "Replace")
      for (const std::string& id : active) {
        target_->Cancel(id);
        count("replaced");
      }
  }
  auto params = RenderScheduleParams(run.pipeline, entry.spec, run.time);
  if (!params) {
    d.action = "error";
    d.message = params.error().message();
    count(d.action);
    out->push_back(d);
    return;
  }
  run.params = *params;
  pending_.push_back(run);
  if (Status s = SaveLocked(); !s.ok()) {
    pending_.pop_back();
    d.action = "error";
    d.message = s.message();
    count(d.action);
    out->push_back(d);
    return;
  }
  Status s = target_->Launch(run);
  if (s.ok() || s.code() == StatusCode::kAlreadyExists) {
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                  [&](const ScheduledRun& p) { return p.run_id == run.run_id; }),
                   pending_.end());
    (void)SaveLocked();
  }
  if (s.ok()) {
    d.action = "launched";
    if (metrics_)
      metrics_->scheduler_lag->Set({{"pipeline", run.pipeline}},
                                   static_cast<double>((now - run.time).count()));
  } else if (s.code() == StatusCode::kAlreadyExists) {
    d.action = "duplicate";
    d.message = s.message();
  } else {
    d.action = "error";  // stays pending: retried by the next Open()
    d.message = s.message();
  }
  count(d.action);
  out->push_back(d);
}

std::vector<ScheduleDecision> Scheduler::Tick() {
  std::lock_guard lock(mu_);
  std::vector<ScheduleDecision> out;
  const SysSeconds now = NowSeconds();
  // Launches left pending by a failed Launch get another chance.
  if (!pending_.empty()) {
    std::vector<ScheduledRun> retry = std::move(pending_);
    pending_.clear();
    for (ScheduledRun& run : retry) {
      Status s = target_->Launch(run);
      if (!s.ok() && s.code() != StatusCode::kAlreadyExists) pending_.push_back(run);
    }
    (void)SaveLocked();
  }
  for (const auto& [name, entry] : entries_) {
    auto it = last_.find(name);
    if (it == last_.end()) {
      last_[name] = now;  // first sight: start from now
      (void)SaveLocked();
      continue;
    }
    const ScheduleSpec& spec = entry.spec;
    const size_t keep = spec.catchup == "all" ? static_cast<size_t>(std::max(1, spec.catchup_limit)) : 1;
    std::deque<SysSeconds> due;  // newest `keep` due times
    std::vector<SysSeconds> dropped_sample;
    int dropped = 0, enumerated = 0;
    SysSeconds t = it->second;
    while (enumerated < kMaxEnumerated) {
      auto n = NextAfter(entry, t);
      if (!n || *n > now) break;
      ++enumerated;
      due.push_back(*n);
      if (due.size() > keep) {
        ++dropped;
        due.pop_front();
      }
      t = *n;
    }
    if (due.empty()) continue;
    const SysSeconds newest = due.back();
    std::vector<SysSeconds> to_run;
    if (spec.catchup == "none") {
      auto grace = spec.starting_deadline
                       ? std::chrono::duration_cast<std::chrono::seconds>(*spec.starting_deadline)
                       : kDefaultGrace;
      if (now - newest <= grace) to_run.push_back(newest);
      else out.push_back({name, newest, "skipped_catchup", ScheduledRunId(name, newest),
                          "missed while the server was down (catchup: none)"});
      dropped += static_cast<int>(due.size()) - 1;
    } else {
      to_run.assign(due.begin(), due.end());
    }
    if (dropped > 0) {
      out.push_back({name, due.front(), "skipped_catchup", "",
                     std::to_string(dropped) + " older missed cron time(s) skipped (catchup: " +
                         spec.catchup + ", catchupLimit " + std::to_string(spec.catchup_limit) + ")"});
      if (metrics_)
        metrics_->scheduled_runs->Inc({{"pipeline", name}, {"outcome", "skipped_catchup"}}, dropped);
    }
    last_[name] = newest;  // saved with the first pending launch (or below)
    for (SysSeconds when : to_run) {
      ScheduledRun run{name, ScheduledRunId(name, when), when, {}, "cron"};
      if (spec.starting_deadline &&
          now - when > std::chrono::duration_cast<std::chrono::seconds>(*spec.starting_deadline)) {
        out.push_back({name, when, "skipped_deadline", run.run_id,
                       "more than startingDeadline late"});
        if (metrics_) metrics_->scheduled_runs->Inc({{"pipeline", name}, {"outcome", "skipped_deadline"}});
        continue;
      }
      LaunchLocked(entry, std::move(run), now, &out);
    }
    (void)SaveLocked();
  }
  return out;
}

Result<std::vector<ScheduledRun>> PlanBackfill(const PipelineSpec& spec,
                                               const BackfillOptions& options) {
  if (!spec.schedule)
    return Error(Status::InvalidArgument(spec.file + ": pipeline '" + spec.name +
                                         "' has no schedule section; backfill follows its cron "
                                         "expressions"));
  if (options.from > options.to)
    return Error(Status::InvalidArgument("backfill --from is after --to"));
  auto crons = ParseSchedule(*spec.schedule);
  if (!crons) return Error(crons.error());
  std::vector<ScheduledRun> runs;
  SysSeconds t = options.from - std::chrono::seconds(1);
  while (true) {
    std::optional<SysSeconds> next;
    for (const CronSchedule& c : *crons) {
      auto n = c.Next(t);
      if (n && (!next || *n < *next)) next = n;
    }
    if (!next || *next > options.to) break;
    if (static_cast<int>(runs.size()) >= options.max_runs)
      return Error(Status::InvalidArgument(
          "backfill would create more than " + std::to_string(options.max_runs) +
          " runs; narrow --from/--to"));
    auto params = RenderScheduleParams(spec.name, *spec.schedule, *next);
    if (!params) return Error(params.error());
    runs.push_back({spec.name, ScheduledRunId(spec.name, *next), *next, *params, "backfill"});
    t = *next;
  }
  return runs;
}

std::vector<BackfillOutcome> RunBackfill(
    const std::vector<ScheduledRun>& runs, int parallelism,
    const std::function<Result<RunPhase>(const ScheduledRun&)>& run_one) {
  std::vector<BackfillOutcome> outcomes(runs.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < runs.size(); i = next++) {
      outcomes[i].run = runs[i];
      auto phase = run_one(runs[i]);
      if (phase) outcomes[i].phase = *phase;
      else outcomes[i].status = phase.error();
    }
  };
  int n = std::max(1, std::min<int>(parallelism, static_cast<int>(runs.size())));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(worker);
  for (auto& th : threads) th.join();
  return outcomes;
}

}  // namespace sluice::server
