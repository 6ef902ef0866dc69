#include "engine/server/scheduler.h"

#include <date/date.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>

namespace sluice::server {
namespace {

SysSeconds At(const std::string& iso_utc) {
  std::istringstream in(iso_utc);
  SysSeconds t;
  in >> date::parse("%FT%TZ", t);
  EXPECT_FALSE(in.fail()) << iso_utc;
  return t;
}

// Records launches; a second launch of an id is kAlreadyExists, like the store.
class FakeTarget : public ScheduleTarget {
 public:
  std::vector<std::string> ActiveScheduledRuns(const std::string& pipeline) override {
    return {active.begin(), active.end()};
  }
  Status Launch(const ScheduledRun& run) override {
    if (fail_launches) return Status::Unavailable("store busy");
    if (!ids.insert(run.run_id).second) return Status::AlreadyExists("run " + run.run_id + " exists");
    launched.push_back(run);
    active.insert(run.run_id);
    return Status::Ok();
  }
  void Cancel(const std::string& run_id) override {
    cancelled.push_back(run_id);
    active.erase(run_id);
  }

  std::set<std::string> ids;
  std::set<std::string> active;
  std::vector<ScheduledRun> launched;
  std::vector<std::string> cancelled;
  bool fail_launches = false;
};

std::vector<std::string> Actions(const std::vector<ScheduleDecision>& decisions) {
  std::vector<std::string> out;
  for (const auto& d : decisions)
    out.push_back(d.action + " " + date::format("%FT%TZ", d.time) +
                  (d.run_id.empty() ? "" : " " + d.run_id) +
                  (d.message.empty() ? "" : " (" + d.message + ")"));
  return out;
}

ScheduleSpec Every15(std::string catchup = "none") {
  ScheduleSpec s;
  s.cron = {"*/15 * * * *"};
  s.catchup = std::move(catchup);
  return s;
}

TimePoint Tp(const std::string& iso) { return TimePoint(At(iso)); }

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-sched-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    state_ = (dir_ / "schedules.json").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A scheduler that has seen `pipeline` at `first_seen`.
  std::unique_ptr<Scheduler> Make(FakeClock* clock, FakeTarget* target, const ScheduleSpec& spec,
                                  const std::string& first_seen) {
    auto s = std::make_unique<Scheduler>(clock, target, state_);
    EXPECT_TRUE(s->Open().ok());
    EXPECT_TRUE(s->SetSchedule("retrain", spec).ok());
    clock->Advance(std::chrono::duration_cast<Duration>(Tp(first_seen) - clock->Now()));
    EXPECT_TRUE(s->Tick().empty());
    return s;
  }

  std::filesystem::path dir_;
  std::string state_;
};

TEST_F(SchedulerTest, FirstSightStartsFromNowThenLaunchesEachCronTimeOnce) {
  FakeClock clock(Tp("2026-11-25T10:07:00Z"));
  FakeTarget target;
  auto s = Make(&clock, &target, Every15(), "2026-11-25T10:07:00Z");
  EXPECT_EQ(s->NextWakeup(), At("2026-11-25T10:15:00Z"));
  clock.Advance(std::chrono::minutes(8));  // 10:15:00
  EXPECT_EQ(Actions(s->Tick()),
            std::vector<std::string>{"launched 2026-11-25T10:15:00Z retrain-cron-20261125-101500"});
  clock.Advance(std::chrono::seconds(30));
  EXPECT_TRUE(s->Tick().empty());
  ASSERT_EQ(target.launched.size(), 1u);
  EXPECT_EQ(target.launched[0].trigger, "cron");
  EXPECT_EQ(s->LastScheduled("retrain"), At("2026-11-25T10:15:00Z"));
}

TEST_F(SchedulerTest, RestartNeitherDuplicatesNorLosesARun) {
  FakeClock clock(Tp("2026-11-25T10:07:00Z"));
  FakeTarget target;
  {
    auto s = Make(&clock, &target, Every15(), "2026-11-25T10:07:00Z");
    clock.Advance(std::chrono::minutes(8));
    ASSERT_EQ(Actions(s->Tick()).size(), 1u);
  }
  // A restarted server reads the state file: 10:15 was handled.
  clock.Advance(std::chrono::seconds(20));
  {
    Scheduler s(&clock, &target, state_);
    ASSERT_TRUE(s.Open().ok());
    ASSERT_TRUE(s.SetSchedule("retrain", Every15()).ok());
    EXPECT_TRUE(s.Tick().empty());
  }
  // A crash between deciding and launching 10:30 leaves it pending in the
  // state file; the next start launches it.
  clock.Advance(std::chrono::minutes(15));  // 10:30:20
  {
    Scheduler s(&clock, &target, state_);
    ASSERT_TRUE(s.Open().ok());
    ASSERT_TRUE(s.SetSchedule("retrain", Every15()).ok());
    target.fail_launches = true;
    EXPECT_EQ(Actions(s.Tick()),
              std::vector<std::string>{"error 2026-11-25T10:30:00Z retrain-cron-20261125-103000 (store busy)"});
  }
  target.fail_launches = false;
  {
    Scheduler s(&clock, &target, state_);
    ASSERT_TRUE(s.Open().ok());  // launches the pending run
    ASSERT_TRUE(s.SetSchedule("retrain", Every15()).ok());
    EXPECT_TRUE(s.Tick().empty());
    // Opening again finds nothing pending, and a duplicate launch is refused.
  }
  {
    Scheduler s(&clock, &target, state_);
    ASSERT_TRUE(s.Open().ok());
  }
  std::vector<std::string> ids;
  for (const auto& r : target.launched) ids.push_back(r.run_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"retrain-cron-20261125-101500",
                                           "retrain-cron-20261125-103000"}));
}

TEST_F(SchedulerTest, CatchupNoneSkipsTimesMissedWhileDown) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  auto s = Make(&clock, &target, Every15("none"), "2026-11-25T10:00:00Z");
  clock.Advance(std::chrono::minutes(67));  // 11:07: 10:15 .. 11:00 missed
  EXPECT_EQ(Actions(s->Tick()),
            (std::vector<std::string>{
                "skipped_catchup 2026-11-25T11:00:00Z retrain-cron-20261125-110000 (missed while "
                "the server was down (catchup: none))",
                "skipped_catchup 2026-11-25T11:00:00Z (3 older missed cron time(s) skipped "
                "(catchup: none, catchupLimit 10))"}));
  EXPECT_TRUE(target.launched.empty());
  EXPECT_EQ(s->LastScheduled("retrain"), At("2026-11-25T11:00:00Z"));
}

TEST_F(SchedulerTest, CatchupLatestRunsTheNewestMissedTime) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  auto s = Make(&clock, &target, Every15("latest"), "2026-11-25T10:00:00Z");
  clock.Advance(std::chrono::minutes(67));
  EXPECT_EQ(Actions(s->Tick()),
            (std::vector<std::string>{
                "skipped_catchup 2026-11-25T11:00:00Z (3 older missed cron time(s) skipped "
                "(catchup: latest, catchupLimit 10))",
                "launched 2026-11-25T11:00:00Z retrain-cron-20261125-110000"}));
}

TEST_F(SchedulerTest, CatchupAllRunsTheNewestCatchupLimitTimesOldestFirst) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  ScheduleSpec spec = Every15("all");
  spec.catchup_limit = 3;
  auto s = Make(&clock, &target, spec, "2026-11-25T10:00:00Z");
  clock.Advance(std::chrono::minutes(67));
  EXPECT_EQ(Actions(s->Tick()),
            (std::vector<std::string>{
                "skipped_catchup 2026-11-25T10:30:00Z (1 older missed cron time(s) skipped "
                "(catchup: all, catchupLimit 3))",
                "launched 2026-11-25T10:30:00Z retrain-cron-20261125-103000",
                "launched 2026-11-25T10:45:00Z retrain-cron-20261125-104500",
                "launched 2026-11-25T11:00:00Z retrain-cron-20261125-110000"}));
}

TEST_F(SchedulerTest, StartingDeadlineSkipsTimesThatAreTooLate) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  ScheduleSpec spec = Every15("all");
  spec.starting_deadline = std::chrono::minutes(10);
  auto s = Make(&clock, &target, spec, "2026-11-25T10:00:00Z");
  clock.Advance(std::chrono::minutes(52));  // 10:52: 10:15, 10:30 too late; 10:45 in time
  EXPECT_EQ(Actions(s->Tick()),
            (std::vector<std::string>{
                "skipped_deadline 2026-11-25T10:15:00Z retrain-cron-20261125-101500 (more than "
                "startingDeadline late)",
                "skipped_deadline 2026-11-25T10:30:00Z retrain-cron-20261125-103000 (more than "
                "startingDeadline late)",
                "launched 2026-11-25T10:45:00Z retrain-cron-20261125-104500"}));
}

TEST_F(SchedulerTest, ForbidSkipsWhileAScheduledRunIsActive) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  ScheduleSpec spec = Every15();
  spec.concurrency_policy = "Forbid";
  auto s = Make(&clock, &target, spec, "2026-11-25T10:00:00Z");
  clock.Advance(std::chrono::minutes(15));
  EXPECT_EQ(Actions(s->Tick()).size(), 1u);  // launched, still active
  clock.Advance(std::chrono::minutes(15));
  EXPECT_EQ(Actions(s->Tick()),
            std::vector<std::string>{"skipped_forbid 2026-11-25T10:30:00Z retrain-cron-20261125-103000 "
                                     "(concurrencyPolicy Forbid: retrain-cron-20261125-101500 has "
                                     "not finished)"});
  target.active.clear();  // it finished
  clock.Advance(std::chrono::minutes(15));
  EXPECT_EQ(Actions(s->Tick()),
            std::vector<std::string>{"launched 2026-11-25T10:45:00Z retrain-cron-20261125-104500"});
}

TEST_F(SchedulerTest, ReplaceCancelsTheActiveRunFirst) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  ScheduleSpec spec = Every15();
  spec.concurrency_policy = "Replace";
  auto s = Make(&clock, &target, spec, "2026-11-25T10:00:00Z");
  clock.Advance(std::chrono::minutes(15));
  s->Tick();
  clock.Advance(std::chrono::minutes(15));
  EXPECT_EQ(Actions(s->Tick()),
            std::vector<std::string>{"launched 2026-11-25T10:30:00Z retrain-cron-20261125-103000"});
  EXPECT_EQ(target.cancelled, std::vector<std::string>{"retrain-cron-20261125-101500"});
}

TEST_F(SchedulerTest, ParamsAreRenderedFromTheScheduledTimeInTheScheduleTimezone) {
  ScheduleSpec spec;
  spec.cron = {"30 0 * * *"};
  spec.timezone = "Europe/Amsterdam";
  spec.params["data_date"] = Template{"{{ schedule.date }}", {}};
  spec.params["at"] = Template{"{{ schedule.time }}", {}};
  spec.params["local"] = Template{"{{ schedule.datetime }}", {}};
  spec.params["path"] = Template{"s3://bucket/{{ schedule.year }}/{{ schedule.month }}/{{ schedule.day }}", {}};
  // 00:30 in Amsterdam on 26 Nov is 23:30 UTC on 25 Nov.
  FakeClock clock(Tp("2026-11-25T23:00:00Z"));
  FakeTarget target;
  auto s = Make(&clock, &target, spec, "2026-11-25T23:00:00Z");
  clock.Advance(std::chrono::minutes(30));
  EXPECT_EQ(Actions(s->Tick()),
            std::vector<std::string>{"launched 2026-11-25T23:30:00Z retrain-cron-20261125-233000"});
  ASSERT_EQ(target.launched.size(), 1u);
  EXPECT_EQ(target.launched[0].params,
            (std::map<std::string, std::string>{{"at", "2026-11-25T23:30:00Z"},
                                                {"data_date", "2026-11-26"},
                                                {"local", "2026-11-26T00:30:00+01:00"},
                                                {"path", "s3://bucket/2026/11/26"}}));
}

TEST_F(SchedulerTest, InvalidSchedulesAreRejectedWithTheirLocation) {
  FakeClock clock(Tp("2026-11-25T10:00:00Z"));
  FakeTarget target;
  Scheduler s(&clock, &target, state_);
  ScheduleSpec spec;
  spec.cron = {"61 * * * *"};
  spec.loc = {"retrain.yaml", 40, 3};
  EXPECT_EQ(s.SetSchedule("retrain", spec).message(),
            "retrain.yaml:40:3: cron '61 * * * *': minute field: value 61 out of range 0-59");
  spec.cron = {"@daily"};
  spec.timezone = "Mars/Olympus";
  EXPECT_EQ(s.SetSchedule("retrain", spec).code(), StatusCode::kInvalidArgument);
  spec.timezone = "UTC";
  spec.concurrency_policy = "Sometimes";
  EXPECT_EQ(s.SetSchedule("retrain", spec).message(),
            "retrain.yaml:40:3: concurrencyPolicy 'Sometimes' is not one of Allow, Forbid, Replace");
  EXPECT_TRUE(s.Pipelines().empty());
}

TEST(BackfillTest, PlansEveryCronTimeInTheRangeWithParams) {
  PipelineSpec spec;
  spec.name = "retrain";
  spec.schedule = ScheduleSpec{};
  spec.schedule->cron = {"0 6 * * *"};
  spec.schedule->params["data_date"] = Template{"{{ schedule.date }}", {}};
  BackfillOptions o;
  o.from = At("2026-11-01T00:00:00Z");
  o.to = At("2026-11-03T06:00:00Z");
  auto runs = PlanBackfill(spec, o);
  ASSERT_TRUE(runs.has_value()) << runs.error().ToString();
  std::vector<std::string> got;
  for (const auto& r : *runs) got.push_back(r.run_id + " " + r.params.at("data_date") + " " + r.trigger);
  EXPECT_EQ(got, (std::vector<std::string>{"retrain-cron-20261101-060000 2026-11-01 backfill",
                                           "retrain-cron-20261102-060000 2026-11-02 backfill",
                                           "retrain-cron-20261103-060000 2026-11-03 backfill"}));
  o.max_runs = 2;
  EXPECT_EQ(PlanBackfill(spec, o).error().message(),
            "backfill would create more than 2 runs; narrow --from/--to");
  spec.schedule.reset();
  spec.file = "retrain.yaml";
  EXPECT_EQ(PlanBackfill(spec, o).error().message(),
            "retrain.yaml: pipeline 'retrain' has no schedule section; backfill follows its cron "
            "expressions");
}

TEST(BackfillTest, RunBackfillRespectsParallelismAndKeepsOrder) {
  std::vector<ScheduledRun> runs;
  for (int i = 0; i < 7; ++i) runs.push_back({"p", "p-" + std::to_string(i), {}, {}, "backfill"});
  std::atomic<int> running{0}, peak{0};
  std::mutex mu;
  std::condition_variable cv;
  auto outcomes = RunBackfill(runs, 3, [&](const ScheduledRun& r) -> Result<RunPhase> {
    int now = ++running;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {}
    --running;
    if (r.run_id == "p-4") return Error(Status::AlreadyExists("exists"));
    return RunPhase::kSucceeded;
  });
  ASSERT_EQ(outcomes.size(), 7u);
  EXPECT_LE(peak.load(), 3);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(outcomes[i].run.run_id, "p-" + std::to_string(i));
  EXPECT_EQ(outcomes[4].status.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(outcomes[3].phase, RunPhase::kSucceeded);
}

}  // namespace
}  // namespace sluice::server
