#include "engine/server/junit.h"

#include <gtest/gtest.h>

namespace sluice::server {
namespace {

TimePoint At(int seconds) { return TimePoint{} + std::chrono::seconds(1764084600 + seconds); }

StepRecord Step(std::string instance, NodePhase phase, int start, int end) {
  StepRecord s;
  s.instance = instance;
  s.step = instance.substr(0, instance.find('['));
  s.phase = phase;
  s.attempts = 1;
  if (start >= 0) s.started_at = At(start);
  if (end >= 0) s.finished_at = At(end);
  return s;
}

TEST(JunitXmlTest, OneTestcasePerStepWithPhaseMapping) {
  RunSummary summary;
  summary.run.id = "retrain-20261125-153000-ab12";
  summary.run.pipeline = "retrain";
  summary.run.phase = RunPhase::kFailed;
  summary.run.started_at = At(0);
  summary.run.finished_at = At(42);
  summary.steps.push_back(Step("prepare", NodePhase::kSucceeded, 0, 3));
  summary.steps.back().log_path = "/s/logs/prepare.log";
  StepRecord train = Step("train[0]", NodePhase::kFailed, 3, 10);
  train.exit_code = 2;
  train.attempts = 2;
  train.message = "exit status 2 <bad & worse>";
  train.log_path = "/s/logs/train-0.log";
  summary.steps.push_back(train);
  summary.steps.push_back(Step("register", NodePhase::kSkipped, -1, -1));
  summary.steps.back().message = "when was false";
  summary.steps.push_back(Step("evaluate", NodePhase::kOmitted, -1, -1));
  StepRecord cached = Step("features", NodePhase::kCached, -1, -1);
  cached.cached_from = "retrain-1/features";
  summary.steps.push_back(cached);

  EXPECT_EQ(JunitXml(summary),
            R"(<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="sluice" tests="5" failures="1" errors="1" skipped="2" time="42.000">
  <testsuite name="retrain" id="retrain-20261125-153000-ab12" tests="5" failures="1" errors="1" skipped="2" time="42.000">
    <properties>
      <property name="run" value="retrain-20261125-153000-ab12"/>
      <property name="phase" value="Failed"/>
    </properties>
    <testcase classname="retrain" name="prepare" time="3.000">
      <system-out>log: /s/logs/prepare.log</system-out>
    </testcase>
    <testcase classname="retrain" name="train[0]" time="7.000">
      <failure message="exit status 2 &lt;bad &amp; worse&gt;; exit code 2; 2 attempts" type="Failed">log: /s/logs/train-0.log</failure>
    </testcase>
    <testcase classname="retrain" name="register" time="0.000">
      <skipped message="when was false"/>
    </testcase>
    <testcase classname="retrain" name="evaluate" time="0.000">
      <error message="Omitted" type="Omitted">log: </error>
    </testcase>
    <testcase classname="retrain" name="features" time="0.000">
      <skipped message="Cached from retrain-1/features"/>
    </testcase>
  </testsuite>
</testsuites>
)");
}

TEST(JunitXmlTest, WriteJunitXmlReportsUnwritablePaths) {
  RunSummary summary;
  Status s = WriteJunitXml(summary, "/nonexistent-dir/report.xml");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("/nonexistent-dir/report.xml.tmp"), std::string::npos);
}

}  // namespace
}  // namespace sluice::server
