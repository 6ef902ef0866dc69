// Dispatches an N-step fan-out of container steps (bare Pods, or Jobs with
// --object job) through the KubernetesExecutor
// to a live cluster and reports (see docs/kubernetes.md, "Performance"):
//   - steps per second (first create to last result);
//   - sluice's API requests per step, by method (client counters), and the
//     API server's requests per step (apiserver_request_total, all clients:
//     sluice, the Job controller, the scheduler, kwok);
//   - completion -> successor latency: from the watch event carrying a Job's
//     final status to the create request of the step started in its slot
//     (p50, p99).
//
//   - the cost of cleaning up: the requests of deleting the run's objects
//     afterwards (bare pods: what the next run's cleanup of expired pods
//     sends, one list and one delete-collection for the run).
//
//   k8s_fanout_bench --kubeconfig /tmp/sluice-k8s/kubeconfig --steps 1000 --in-flight 100
//                    [--object pod|job] [--qps 50 --burst 100] [--no-logs]
//                    [--namespace default]

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "executors/kubernetes/api/objects.h"
#include "executors/kubernetes/kubernetes_executor.h"

namespace {

using sluice::Duration;
using SteadyClock = std::chrono::steady_clock;

// Sums apiserver_request_total samples, in total and for write verbs.
struct RequestTotals {
  double all = 0, writes = 0;
};

RequestTotals Scrape(sluice::k8s::Client* client) {
  RequestTotals t;
  auto text = client->GetText("/metrics");
  if (!text) {
    std::fprintf(stderr, "cannot read /metrics: %s\n", text.error().message().c_str());
    return t;
  }
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("apiserver_request_total{", 0) != 0) continue;
    double v = std::atof(line.substr(line.rfind(' ') + 1).c_str());
    t.all += v;
    for (const char* verb : {"verb=\"POST\"", "verb=\"PUT\"", "verb=\"PATCH\"", "verb=\"DELETE\"",
                             "verb=\"APPLY\"", "verb=\"DELETECOLLECTION\""}) {
      if (line.find(verb) != std::string::npos) t.writes += v;
    }
  }
  return t;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  std::string kubeconfig, ns = "default", object = "pod";
  int steps = 1000, in_flight = 100;
  double qps = 50;
  int burst = 100;
  bool logs = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--no-logs") logs = false;
    else if (a == "--kubeconfig") kubeconfig = next();
    else if (a == "--steps") steps = std::atoi(next());
    else if (a == "--in-flight") in_flight = std::atoi(next());
    else if (a == "--namespace") ns = next();
    else if (a == "--object") object = next();
    else if (a == "--qps") qps = std::atof(next());
    else if (a == "--burst") burst = std::atoi(next());
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  std::string run_id = "bench-" + std::to_string(::getpid());
  std::filesystem::path dir = std::filesystem::temp_directory_path() / run_id;
  std::filesystem::create_directories(dir);

  std::mutex mu;
  std::map<sluice::TaskId, SteadyClock::time_point> terminal_at, create_at;
  sluice::KubernetesExecutorOptions options;
  options.kubeconfig.kubeconfig = kubeconfig;
  options.manifests.namespace_ = ns;
  options.manifests.ttl_seconds_after_finished = 600;
  options.manifests.object = object;
  options.client.qps = qps;
  options.client.burst = burst;
  options.max_in_flight = in_flight;
  options.fetch_logs = logs;
  options.on_terminal_event = [&](sluice::TaskId id, SteadyClock::time_point at) {
    std::lock_guard<std::mutex> lock(mu);
    terminal_at[id] = at;
  };
  options.on_create_request = [&](sluice::TaskId id) {
    std::lock_guard<std::mutex> lock(mu);
    create_at[id] = SteadyClock::now();
  };
  auto ex = sluice::NewKubernetesExecutor(options);
  if (!ex) {
    std::fprintf(stderr, "%s\n", ex.error().ToString().c_str());
    return 1;
  }
  auto* executor = static_cast<sluice::KubernetesExecutor*>(ex->get());
  RequestTotals before = Scrape(executor->client());
  auto counts_before = executor->client()->RequestCounts();

  auto make = [&](int i) {
    sluice::Task t;
    t.id = static_cast<sluice::TaskId>(i + 1);
    t.run_id = run_id;
    t.pipeline = "fanout";
    t.step = "work";
    t.instance = "work[" + std::to_string(i) + "]";
    t.argv = {"true"};
    t.image = "busybox:1.36";
    t.log_path = (dir / ("work-" + std::to_string(i) + ".log")).string();
    t.resources.cpu_millis = 10;
    t.resources.memory_bytes = 16ll << 20;
    return t;
  };

  // successor[t] = the result whose slot task t was started in.
  std::map<sluice::TaskId, sluice::TaskId> freed_slot_of;
  int started = 0, finished = 0, failed = 0;
  auto t0 = SteadyClock::now();
  std::optional<sluice::TaskId> freed_by;  // result whose slot the next start uses
  while (finished < steps) {
    while (started < steps && executor->CanRunMore()) {
      sluice::Task t = make(started);
      if (freed_by) {
        freed_slot_of[t.id] = *freed_by;
        freed_by.reset();
      }
      sluice::Status st = executor->Start(t);
      if (!st.ok()) {
        std::fprintf(stderr, "start %d: %s\n", started, st.ToString().c_str());
        return 1;
      }
      ++started;
    }
    auto r = executor->Wait(Duration(120000));
    if (!r) {
      std::fprintf(stderr, "no result for 120 s (%d/%d finished)\n", finished, steps);
      return 1;
    }
    ++finished;
    if (r->outcome != sluice::TaskOutcome::kSucceeded) ++failed;
    freed_by = r->id;
  }
  // From the watch event that finished a Job to the create request of the
  // Job started in its slot.
  std::vector<double> latencies_ms;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [succ, pred] : freed_slot_of) {
      auto c = create_at.find(succ);
      auto e = terminal_at.find(pred);
      if (c == create_at.end() || e == terminal_at.end()) continue;
      latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(c->second - e->second).count());
    }
  }
  double seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  RequestTotals after = Scrape(executor->client());
  auto counts = executor->client()->RequestCounts();

  std::printf("object %s, steps %d (failed %d), in flight %d, qps %.0f burst %d, logs %s\n",
              object.c_str(), steps, failed, in_flight, qps, burst, logs ? "fetched" : "not fetched");
  std::printf("wall %.1f s, %.1f steps/s\n", seconds, steps / seconds);
  std::printf("sluice requests per step:");
  for (const auto& [method, n] : counts) {
    std::printf(" %s %.2f", method.c_str(), (n - counts_before[method]) / double(steps));
  }
  std::printf("\napiserver_request_total per step (all clients): %.2f, writes %.2f\n",
              (after.all - before.all) / steps, (after.writes - before.writes) / steps);
  std::printf("completion -> successor create: p50 %.1f ms, p99 %.1f ms (n=%zu)\n",
              Percentile(latencies_ms, 0.5), Percentile(latencies_ms, 0.99), latencies_ms.size());

  // Cleanup, as sluice does it: Jobs go by their TTL controller (here one
  // delete-collection stands in for it); bare pods by one list and one
  // delete-collection per expired run (KubernetesExecutor::DeleteExpiredPods).
  auto counts_cleanup = executor->client()->RequestCounts();
  if (object == "pod") {
    (void)executor->client()->List(sluice::k8s::PodKind(), ns, sluice::k8s::BarePodSelector(""));
    executor->client()->DeleteCollection(sluice::k8s::PodKind(), ns,
                                         sluice::k8s::BarePodSelector(run_id),
                                         sluice::k8s::Propagation::kBackground);
  } else {
    executor->client()->DeleteCollection(sluice::k8s::JobKind(), ns,
                                         sluice::k8s::RunSelector(run_id),
                                         sluice::k8s::Propagation::kBackground);
  }
  std::printf("cleanup of the run's %d objects:", steps);
  for (const auto& [method, n] : executor->client()->RequestCounts()) {
    double d = n - counts_cleanup[method];
    if (d > 0) std::printf(" %s %.0f", method.c_str(), d);
  }
  std::printf("\n");
  std::fflush(stdout);
  ex->reset();  // finishes the log copies still writing into `dir`
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
