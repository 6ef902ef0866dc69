#pragma once
// Helpers for the server's integration tests: temp dirs, a fake RunHandle
// that writes what a Runner would write to the real store, and an HTTP
// client with or without a token.

#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>

#include "engine/server/run_manager.h"
#include "engine/store.h"

namespace sluice::server::testing {

inline std::string MakeTempDir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("sluice-" + tag + "-" + std::to_string(::getpid()) + "-" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Gates that let a test hold fake runs open until it releases them.
struct FakeRunControl {
  std::mutex mu;
  std::condition_variable cv;
  bool hold = false;          // runs wait in Run() until released
  int started = 0;
  std::atomic<int> finished{0};
  void Release() {
    std::lock_guard lock(mu);
    hold = false;
    cv.notify_all();
  }
  // Waits (bounded) until `n` runs have started.
  bool WaitStarted(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(20), [&] { return started >= n; });
  }
};

// Writes the records a real run of `spec` would: the run, each step with a
// log file, every step Succeeded (or Failed when its name is "fail"), and a
// metric per step.
class FakeRunHandle : public RunHandle {
 public:
  FakeRunHandle(SpecPtr spec, RunOptions options, Store* store, FakeRunControl* control)
      : spec_(std::move(spec)), options_(std::move(options)), store_(store), control_(control) {}

  Result<RunSummary> Run() override {
    RunSummary summary;
    RunRecord& run = summary.run;
    run.id = options_.run_id;
    run.pipeline = spec_->name;
    run.pipeline_file = spec_->file;
    run.pipeline_digest = spec_->file_digest;
    std::ifstream in(spec_->file);
    run.pipeline_yaml.assign(std::istreambuf_iterator<char>(in), {});
    run.params = options_.params;
    run.executor = "local";
    run.phase = RunPhase::kRunning;
    run.resumed_from = options_.resume_run_id;
    run.created_at = run.started_at.emplace(std::chrono::system_clock::now());
    run.pid = ::getpid();
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    run.host = host;
    // Like the Runner: a resume continues the same run record.
    const bool same_run = !options_.resume_run_id.empty() && options_.rerun_from.empty();
    if (same_run) {
      run.id = options_.resume_run_id;
      run.resumed_from.clear();
    }
    if (Status s = same_run ? store_->UpdateRun(run) : store_->CreateRun(run); !s.ok())
      return Error(s);
    {
      std::unique_lock lock(control_->mu);
      ++control_->started;
      control_->cv.notify_all();
      control_->cv.wait(lock, [&] { return !control_->hold || cancelled_; });
    }
    bool failed = false;
    for (const auto* list : {&spec_->steps, &spec_->finally_steps})
      for (const StepSpec& step : *list) {
        StepRecord st;
        st.run_id = run.id;
        st.instance = step.name;
        st.step = step.name;
        st.attempts = 1;
        st.started_at = std::chrono::system_clock::now();
        st.finished_at = *st.started_at + std::chrono::milliseconds(250);
        st.log_path = options_.state_dir + "/fake-logs/" + run.id + "/" + step.name + ".log";
        WriteFile(st.log_path, "hello from " + step.name + "\nparams " + options_.params.dump() + "\n");
        st.metrics = {{"accuracy", 0.9}};
        if (cancelled_) {
          st.phase = NodePhase::kCancelled;
        } else if (step.name == "fail") {
          st.phase = NodePhase::kFailed;
          st.exit_code = 1;
          failed = true;
        } else {
          st.phase = NodePhase::kSucceeded;
          st.exit_code = 0;
        }
        (void)store_->PutStep(st);
        // Like the Runner: the observer hears of each step as it ends.
        if (options_.observer.on_step_finished) options_.observer.on_step_finished(st, step);
        summary.steps.push_back(st);
      }
    run.phase = cancelled_ ? RunPhase::kCancelled : failed ? RunPhase::kFailed : RunPhase::kSucceeded;
    run.finished_at = std::chrono::system_clock::now();
    (void)store_->UpdateRun(run);
    ++control_->finished;
    return summary;
  }

  void Cancel() override {
    std::lock_guard lock(control_->mu);
    cancelled_ = true;
    control_->cv.notify_all();
  }

 private:
  SpecPtr spec_;
  RunOptions options_;
  Store* store_;
  FakeRunControl* control_;
  bool cancelled_ = false;
};

// A factory of FakeRunHandles writing to the store `store()` returns when a
// run starts (the server opens its store in Start(), before any run).
inline RunFactory FakeFactory(std::function<Store*()> store, FakeRunControl* control) {
  return [store, control](SpecPtr spec, RunOptions options) -> std::unique_ptr<RunHandle> {
    return std::make_unique<FakeRunHandle>(std::move(spec), std::move(options), store(), control);
  };
}

}  // namespace sluice::server::testing
