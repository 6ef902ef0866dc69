// `kill -9` of the sluice process driving a run, then `sluice resume`: local
// steps that were running are adopted (waited for, or their recorded result
// taken), never started a second time. Real processes, a real SQLite store.

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

#ifndef SLUICE_BIN
#error "SLUICE_BIN must name the sluice binary"
#endif

namespace sluice {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using testutil::Output;
using testutil::ReadFile;

testutil::Subprocess Sluice(const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> argv = {SLUICE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return testutil::Subprocess(std::move(argv), cwd);
}

// "<step> start <ns>" / "<step> end <ns>" lines, as the steps append them.
struct Mark {
  std::string step;
  bool start = false;
  int64_t ns = 0;
};

std::vector<Mark> ReadMarks(const std::string& path) {
  std::vector<Mark> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    Mark m;
    std::string what;
    l >> m.step >> what >> m.ns;
    m.start = what == "start";
    out.push_back(m);
  }
  return out;
}

std::string PhaseOf(const Json& status, const std::string& instance) {
  if (!status.is_object() || !status.contains("steps")) return "";
  for (const auto& s : status["steps"])
    if (s["instance"] == instance) return s["phase"];
  return "";
}

size_t Ends(const std::string& path) {
  auto marks = ReadMarks(path);
  return std::count_if(marks.begin(), marks.end(), [](const Mark& m) { return !m.start; });
}

class AdoptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sluice-adopt-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Json StatusJson(const std::string& cwd, const std::string& run) {
    Output o = Sluice({"status", run, "--format", "json"}, cwd).Wait();
    EXPECT_EQ(o.exit_code, 0) << o.err;
    Json j = Json::parse(o.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << o.out;
    return j;
  }

  // `status --format json`, or null while the run is not recorded yet.
  Json StatusSoFar(const std::string& cwd, const std::string& run) {
    Output o = Sluice({"status", run, "--format", "json"}, cwd).Wait();
    if (o.exit_code != 0) return Json();
    return Json::parse(o.out, nullptr, false);
  }

  // Waits (bounded) until `pred` holds, looking every 5ms.
  static bool WaitUntil(const std::function<bool()>& pred) {
    auto deadline = Clock::now() + std::chrono::seconds(120);
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  std::string dir_;
};

// A run of `n` steps: s00..s<n-1>, step i after step i-4 (four chains) and,
// every tenth, after step i-1 too (joins). Each sleeps its own 50-200ms and
// appends "<step> start <ns>" / "<step> end <ns>" to marks.
std::string FiftyStepPipeline(int n, std::mt19937& rng) {
  std::ostringstream y;
  y << "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata:\n  name: adopt\nsteps:\n";
  std::uniform_int_distribution<int> ms(50, 200);
  for (int i = 0; i < n; ++i) {
    char name[8];
    std::snprintf(name, sizeof(name), "s%02d", i);
    y << "  - name: " << name << "\n";
    std::vector<std::string> deps;
    if (i >= 4) deps.push_back("s" + std::string(i - 4 < 10 ? "0" : "") + std::to_string(i - 4));
    if (i % 10 == 0 && i > 0) deps.push_back("s" + std::string(i - 1 < 10 ? "0" : "") + std::to_string(i - 1));
    if (!deps.empty()) {
      y << "    depends: [";
      for (size_t k = 0; k < deps.size(); ++k) y << (k ? ", " : "") << deps[k];
      y << "]\n";
    }
    char sleep[16];
    std::snprintf(sleep, sizeof(sleep), "0.%03d", ms(rng));
    y << "    command: [sh, -c, 'echo \"" << name << " start $(date +%s%N)\" >> \"$1\"; sleep " << sleep
      << "; echo \"" << name << " end $(date +%s%N)\" >> \"$1\"; echo " << name
      << " > done.txt', sh, '{{ pipeline.dir }}/marks']\n"
      << "    outputs: {params: [{name: done, path: done.txt}]}\n";
  }
  return y.str();
}

// kill -9 at 20 random points (two per run: once in `run`, once in the first
// `resume`), then `resume` until the run succeeds: every step ran exactly
// once, no two copies of a step overlapped, no step started before its
// upstream steps ended. The seed is printed; SLUICE_ADOPT_SEED replays one.
TEST_F(AdoptTest, KillNineAtRandomPointsThenResumeRunsEveryStepExactlyOnce) {
  const char* given = std::getenv("SLUICE_ADOPT_SEED");
  const uint32_t seed = given ? static_cast<uint32_t>(std::strtoul(given, nullptr, 10))
                              : static_cast<uint32_t>(std::random_device{}());
  std::cout << "SLUICE_ADOPT_SEED=" << seed << "\n";
  std::mt19937 rng(seed);
  constexpr int kSteps = 50;
  constexpr int kRuns = 10;
  for (int trial = 0; trial < kRuns; ++trial) {
    SCOPED_TRACE("SLUICE_ADOPT_SEED=" + std::to_string(seed) + " run " + std::to_string(trial));
    const std::string cwd = dir_ + "/t" + std::to_string(trial);
    fs::create_directories(cwd);
    std::ofstream(cwd + "/pipeline.yaml") << FiftyStepPipeline(kSteps, rng);
    const std::string marks = cwd + "/marks";
    const std::string run_id = "adopt-" + std::to_string(trial);

    // Kill points: after k steps ended (0: within the first 300ms).
    std::uniform_int_distribution<int> first(0, kSteps - 12);
    const int k1 = first(rng);
    const int k2 = std::uniform_int_distribution<int>(k1 + 1, kSteps - 2)(rng);
    const int startup_ms = std::uniform_int_distribution<int>(0, 300)(rng);
    std::cout << "run " << trial << ": kill -9 after " << k1 << " and " << k2 << " steps ended\n";

    auto kill_at = [&](testutil::Subprocess& p, int k) {
      if (k == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(startup_ms));  // a random instant
      } else {
        EXPECT_TRUE(WaitUntil([&] { return Ends(marks) >= static_cast<size_t>(k); }))
            << "fewer than " << k << " steps ended";
      }
      ::kill(p.pid(), SIGKILL);
      Output o = p.Wait();
      if (o.exit_code != 128 + SIGKILL) {
        ADD_FAILURE() << "sluice ended before the kill (" << o.exit_code << "): " << o.out << o.err;
      }
    };
    testutil::Subprocess run = Sluice({"run", "pipeline.yaml", "--run-id", run_id, "-j", "4"}, cwd);
    kill_at(run, k1);
    // A kill before the run was recorded leaves nothing to resume: run again.
    Output first_resume_check = Sluice({"status", run_id}, cwd).Wait();
    testutil::Subprocess again = first_resume_check.exit_code == 0
                                     ? Sluice({"resume", run_id, "-j", "4"}, cwd)
                                     : Sluice({"run", "pipeline.yaml", "--run-id", run_id, "-j", "4"}, cwd);
    kill_at(again, k2);

    Output done;
    for (int i = 0; i < 3; ++i) {
      done = Sluice({"resume", run_id, "-j", "4"}, cwd).Wait();
      if (done.exit_code == 0) break;
    }
    ASSERT_EQ(done.exit_code, 0) << done.out << done.err;
    Json status = StatusJson(cwd, run_id);
    EXPECT_EQ(status["run"]["phase"], "Succeeded");
    ASSERT_EQ(status["steps"].size(), static_cast<size_t>(kSteps));
    for (const auto& s : status["steps"]) {
      EXPECT_EQ(s["phase"], "Succeeded") << s.dump();
      EXPECT_EQ(s["attempts"], 1) << s.dump();
    }

    // Every step started once and ended once, after its upstream steps.
    std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> copies;
    std::map<std::string, int64_t> open;
    for (const Mark& m : ReadMarks(marks)) {
      if (m.start) {
        EXPECT_FALSE(open.count(m.step)) << m.step << " started while a copy of it ran";
        open[m.step] = m.ns;
      } else {
        ASSERT_TRUE(open.count(m.step)) << m.step << " ended without starting";
        copies[m.step].push_back({open[m.step], m.ns});
        open.erase(m.step);
      }
    }
    EXPECT_TRUE(open.empty()) << open.size() << " steps started and never ended";
    for (int i = 0; i < kSteps; ++i) {
      char name[8];
      std::snprintf(name, sizeof(name), "s%02d", i);
      ASSERT_EQ(copies[name].size(), 1u) << name << " ran " << copies[name].size() << " times";
      if (i >= 4) {
        char up[8];
        std::snprintf(up, sizeof(up), "s%02d", i - 4);
        EXPECT_GT(copies[name][0].first, copies[up][0].second) << name << " started before " << up << " ended";
      }
    }
  }
}

// While the driver is gone, `status` says so, the steps' logs keep being
// written, and `resume` adopts the running steps.
TEST_F(AdoptTest, StatusNamesAGoneDriverAndResumeAdoptsItsRunningSteps) {
  std::ofstream(dir_ + "/pipeline.yaml") << R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: gone
steps:
  - name: left
    command: [sh, -c, 'echo before; echo left >> "$1"; read line < "$2"; echo "after $line"', sh,
              '{{ pipeline.dir }}/marks', '{{ pipeline.dir }}/gate-left']
  - name: right
    command: [sh, -c, 'echo before; echo right >> "$1"; read line < "$2"; echo "after $line"', sh,
              '{{ pipeline.dir }}/marks', '{{ pipeline.dir }}/gate-right']
)yaml";
  ASSERT_EQ(::mkfifo((dir_ + "/gate-left").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((dir_ + "/gate-right").c_str(), 0600), 0);
  testutil::Subprocess run = Sluice({"run", "pipeline.yaml", "--run-id", "gone-1", "-j", "2"}, dir_);
  ASSERT_TRUE(WaitUntil([&] { return ReadFile(dir_ + "/marks").size() == 11; }));  // "left\nright\n"
  const pid_t driver = run.pid();
  // Both are recorded Running once sluice has started them.
  ASSERT_TRUE(WaitUntil([&] {
    Json st = StatusSoFar(dir_, "gone-1");
    return PhaseOf(st, "left") == "Running" && PhaseOf(st, "right") == "Running";
  }));

  Output refused = Sluice({"resume", "gone-1"}, dir_).Wait();
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_EQ(refused.err, "sluice: error: run gone-1 is still running (pid " + std::to_string(driver) +
                             "); stop it first or wait for it\n");

  ::kill(driver, SIGKILL);
  EXPECT_EQ(run.Wait().exit_code, 128 + SIGKILL);
  Output status = Sluice({"status", "gone-1"}, dir_).Wait();
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_NE(status.out.find("Phase:     Running (driver pid " + std::to_string(driver) +
                            " gone; `sluice resume gone-1` adopts its 2 running steps)\n"),
            std::string::npos)
      << status.out;

  // One step ends while no sluice runs: its log is still written.
  std::ofstream(dir_ + "/gate-left") << "unwatched\n";
  const std::string logs = dir_ + "/.sluice/runs/gone-1/logs/";
  ASSERT_TRUE(WaitUntil([&] { return fs::exists(logs + "left.attempt1.status"); }));
  EXPECT_EQ(ReadFile(logs + "left.attempt1.log"), "before\nafter unwatched\n");

  testutil::Subprocess resumed = Sluice({"resume", "gone-1"}, dir_);
  // The other is adopted while it runs: once resume has taken the first
  // one's recorded result, it waits for the second.
  ASSERT_TRUE(WaitUntil([&] {
    Json st = StatusSoFar(dir_, "gone-1");
    return PhaseOf(st, "left") == "Succeeded";
  }));
  EXPECT_EQ(PhaseOf(StatusJson(dir_, "gone-1"), "right"), "Running");
  std::ofstream(dir_ + "/gate-right") << "adopted\n";
  Output o = resumed.Wait();
  EXPECT_EQ(o.exit_code, 0) << o.out << o.err;
  Json st = StatusJson(dir_, "gone-1");
  EXPECT_EQ(st["run"]["phase"], "Succeeded");
  for (const auto& s : st["steps"]) {
    EXPECT_EQ(s["phase"], "Succeeded") << s.dump();
    EXPECT_EQ(s["attempts"], 1) << s.dump();
  }
  const std::string marks = ReadFile(dir_ + "/marks");  // each started once
  EXPECT_TRUE(marks == "left\nright\n" || marks == "right\nleft\n") << marks;
  EXPECT_EQ(ReadFile(logs + "right.attempt1.log"), "before\nafter adopted\n");
}

// `sluice cancel` of a run whose driver is gone stops the local steps that
// still run under their supervisors.
TEST_F(AdoptTest, CancelOfARunWithoutItsDriverStopsItsLocalSteps) {
  std::ofstream(dir_ + "/pipeline.yaml") << R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: orphan
steps:
  - name: long
    command: [sleep, "1000"]
)yaml";
  testutil::Subprocess run = Sluice({"run", "pipeline.yaml", "--run-id", "orphan-1"}, dir_);
  ASSERT_TRUE(WaitUntil([&] { return PhaseOf(StatusSoFar(dir_, "orphan-1"), "long") == "Running"; }));
  ::kill(run.pid(), SIGKILL);
  EXPECT_EQ(run.Wait().exit_code, 128 + SIGKILL);
  const std::string pid_text = ReadFile(dir_ + "/.sluice/runs/orphan-1/logs/long.attempt1.pid");
  const size_t at = pid_text.find("\nstep ");
  ASSERT_NE(at, std::string::npos) << pid_text;
  const pid_t step = static_cast<pid_t>(std::stol(pid_text.substr(at + 6)));
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, step, 0));
  ASSERT_GE(pidfd, 0) << "the step died with sluice";

  Output cancel = Sluice({"cancel", "orphan-1"}, dir_).Wait();
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, "run orphan-1 Cancelled: its sluice process was gone; stopped its 1 local step process\n");
  pollfd p{pidfd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 120000), 1) << "the step still runs";
  ::close(pidfd);
  EXPECT_EQ(StatusJson(dir_, "orphan-1")["run"]["phase"], "Cancelled");
}

}  // namespace
}  // namespace sluice
