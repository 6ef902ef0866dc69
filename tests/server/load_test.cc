// Load test of `sluice serve` on loopback (a benchmark, not a unit test):
// N concurrent API clients list runs, read runs and fetch step logs while
// M runs execute; reports throughput, latency percentiles and errors.
//
//   server_load [--clients 200] [--runs 50] [--seconds 20] [--steps 8]
//               [--step-ms 2000]
//
// The runs use the fake Runner of server_test_util.h extended with a step
// duration, so the figures measure the server (HTTP, store reads, log
// reads), not the steps. Every request must succeed: any error or non-2xx
// is counted and makes the exit code 1.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

#include "engine/server/config.h"
#include "engine/server/server.h"
#include "server_test_util.h"

using namespace sluice;
using namespace sluice::server;

namespace {

// A fake run whose steps take `step_ms` each and append to their logs.
class SlowRun : public RunHandle {
 public:
  SlowRun(SpecPtr spec, RunOptions options, Store* store, int step_ms)
      : spec_(std::move(spec)), options_(std::move(options)), store_(store), step_ms_(step_ms) {}
  Result<RunSummary> Run() override {
    RunSummary summary;
    RunRecord& run = summary.run;
    run.id = options_.run_id;
    run.pipeline = spec_->name;
    run.pipeline_digest = spec_->file_digest;
    run.params = options_.params;
    run.phase = RunPhase::kRunning;
    run.created_at = run.started_at.emplace(std::chrono::system_clock::now());
    if (Status s = store_->CreateRun(run); !s.ok()) return Error(s);
    for (const StepSpec& step : spec_->steps) {
      StepRecord st;
      st.run_id = run.id;
      st.instance = st.step = step.name;
      st.attempts = 1;
      st.phase = NodePhase::kRunning;
      st.started_at = std::chrono::system_clock::now();
      st.log_path = options_.state_dir + "/load-logs/" + run.id + "/" + step.name + ".log";
      testing::WriteFile(st.log_path, "");
      (void)store_->PutStep(st);
      {
        std::ofstream log(st.log_path, std::ios::app);
        for (int i = 0; i < 50; ++i) log << step.name << " line " << i << " of a training log\n";
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(step_ms_), [&] { return cancelled_; });
      lock.unlock();
      st.phase = cancelled_ ? NodePhase::kCancelled : NodePhase::kSucceeded;
      st.exit_code = 0;
      st.finished_at = std::chrono::system_clock::now();
      (void)store_->PutStep(st);
      summary.steps.push_back(st);
    }
    run.phase = cancelled_ ? RunPhase::kCancelled : RunPhase::kSucceeded;
    run.finished_at = std::chrono::system_clock::now();
    (void)store_->UpdateRun(run);
    return summary;
  }
  void Cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }

 private:
  SpecPtr spec_;
  RunOptions options_;
  Store* store_;
  int step_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
};

int Arg(int argc, char** argv, const char* name, int def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const int clients = Arg(argc, argv, "--clients", 200);
  const int runs = Arg(argc, argv, "--runs", 50);
  const int seconds = Arg(argc, argv, "--seconds", 20);
  const int steps = Arg(argc, argv, "--steps", 8);
  const int step_ms = Arg(argc, argv, "--step-ms", 2000);
  std::string dir = testing::MakeTempDir("load");
  std::string yaml = "apiVersion: sluice.dev/v1\nkind: Pipeline\nmetadata:\n  name: load\nsteps:\n";
  for (int i = 0; i < steps; ++i)
    yaml += "  - name: s" + std::to_string(i) + "\n    command: [echo, x]\n" +
            (i ? "    depends: [s" + std::to_string(i - 1) + "]\n" : "");
  testing::WriteFile(dir + "/pipelines/load.yaml", yaml);
  const std::string token = "load-token";
  // Every client connects from 127.0.0.1: one "client" to the per-client
  // connection cap, which is raised to let all of them in.
  testing::WriteFile(dir + "/server.yaml", "tokens:\n  - name: load\n    sha256: " + HashToken(token) +
                                               "\nhttp:\n  maxConnections: 1024\n"
                                               "  maxConnectionsPerClient: 1024\n");
  ServerOptions o;
  o.pipelines_dir = dir + "/pipelines";
  o.state_dir = dir + "/state";
  o.listen = "127.0.0.1:0";
  o.config_path = dir + "/server.yaml";
  o.run_scheduler = false;
  o.max_concurrent_runs = runs;
  Store* store = nullptr;
  Server server(o, nullptr, nullptr, [&](SpecPtr spec, RunOptions ro) -> std::unique_ptr<RunHandle> {
    return std::make_unique<SlowRun>(std::move(spec), std::move(ro), store, step_ms);
  });
  if (Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "server_load: %s\n", s.ToString().c_str());
    return 1;
  }
  store = server.store();
  const httplib::Headers auth = {{"Authorization", "Bearer " + token}};

  // Submit the runs over the API.
  std::vector<std::string> run_ids;
  {
    httplib::Client c("127.0.0.1", server.port());
    for (int i = 0; i < runs; ++i) {
      auto r = c.Post("/api/v1/pipelines/load/runs", auth, "{}", "application/json");
      if (!r || r->status != 201) {
        std::fprintf(stderr, "server_load: submit failed\n");
        return 1;
      }
      run_ids.push_back(Json::parse(r->body)["run_id"]);
    }
  }
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::seconds(seconds);
  std::atomic<long> errors{0}, requests{0}, bytes{0};
  std::mutex lat_mu;
  std::vector<double> latencies;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", server.port());
      cli.set_keep_alive(true);
      cli.set_read_timeout(30, 0);
      std::vector<double> mine;
      for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
        const std::string& id = run_ids[(c + i) % run_ids.size()];
        std::string path;
        switch (i % 3) {
          case 0: path = "/api/v1/runs?limit=50"; break;
          case 1: path = "/api/v1/runs/" + id; break;
          default: path = "/api/v1/runs/" + id + "/steps/s0/logs"; break;
        }
        auto t0 = std::chrono::steady_clock::now();
        auto r = cli.Get(path.c_str(), auth);
        auto t1 = std::chrono::steady_clock::now();
        ++requests;
        // A log not written yet (step not started) is a 404 by design.
        if (!r || (r->status != 200 && !(r->status == 404 && i % 3 == 2))) ++errors;
        else bytes += static_cast<long>(r->body.size());
        mine.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::lock_guard lock(lat_mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  bool idle = server.runs()->WaitIdle(std::chrono::minutes(5));
  int succeeded = 0;
  for (const std::string& id : run_ids)
    if (auto r = store->GetRun(id); r && r->phase == RunPhase::kSucceeded) ++succeeded;
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))];
  };
  std::printf(
      "clients=%d runs=%d steps/run=%d step_ms=%d duration_s=%.1f\n"
      "requests=%ld errors=%ld throughput_rps=%.0f bytes=%ld\n"
      "latency_ms p50=%.2f p95=%.2f p99=%.2f max=%.2f\n"
      "runs_succeeded=%d/%d all_idle=%s\n",
      clients, runs, steps, step_ms, elapsed, requests.load(), errors.load(),
      requests.load() / elapsed, bytes.load(), pct(0.50), pct(0.95), pct(0.99),
      latencies.empty() ? 0.0 : latencies.back(), succeeded, runs, idle ? "yes" : "no");
  server.Stop();
  std::filesystem::remove_all(dir);
  return errors.load() == 0 && succeeded == runs ? 0 : 1;
}
