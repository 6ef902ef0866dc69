// End-to-end on the live test cluster started with Kueue (`tests/k8s/cluster
// up --with-kueue`: ClusterQueue gpu with 2 nvidia.com/gpu, LocalQueue
// team-a in namespace team-a): a 6-way foreach of GPU steps queued in team-a
// through the real `sluice` binary. Checked: Kueue never holds quota for
// more than 2 of the run's Workloads at once (from a watch of the Workloads,
// whose events come in the order etcd wrote them), sluice's recorded step
// times never overlap more than 2 deep, `sluice status` shows a waiting step
// as Queued "queued in team-a (Kueue: pending admission, position N)", and
// all 6 succeed on their first attempt (kwok ends each pod after its
// sluice.dev/kwok-duration, 8 s), although the last two wait in the queue
// longer than their pendingTimeout (10 s), which counts from admission.
//
// Registered with FIXTURES_REQUIRED k8s and LABELS k8s; skipped when the
// cluster's kubeconfig is absent or the cluster runs without Kueue.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "executors/kubernetes/kueue.h"
#include "operators/kubernetes/manifests.h"
#include "tests/executors/kubernetes/live_cluster.h"
#include "tests/executors/kubernetes/sluice_process.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using test_support::ClusterClient;
using test_support::LiveRunId;
using test_support::SluiceProcess;

const k8s::ResourceKind& ClusterQueueKind() {
  static const k8s::ResourceKind kind{"kueue.x-k8s.io/v1beta2", "ClusterQueue", "clusterqueues", false};
  return kind;
}

bool ConditionTrue(const Json& object, const std::string& type) {
  if (!object.contains("status") || !object["status"].contains("conditions")) return false;
  for (const auto& c : object["status"]["conditions"])
    if (c.value("type", "") == type && c.value("status", "") == "True") return true;
  return false;
}

// The most intervals [start, end) that hold at once; an end and a start at
// the same time do not overlap.
int MaxOverlap(const std::vector<std::pair<std::string, std::string>>& intervals) {
  std::vector<std::pair<std::string, int>> edges;
  for (const auto& [start, end] : intervals) {
    edges.push_back({start, +1});
    edges.push_back({end, -1});
  }
  std::sort(edges.begin(), edges.end());  // at equal times -1 sorts before +1
  int now = 0, most = 0;
  for (const auto& e : edges) most = std::max(most, now += e.second);
  return most;
}

// Runs once per object: a bare Pod (Kueue's pod integration gates it) and a
// Job (Kueue's webhook suspends it).
class KueueLiveTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    kubeconfig_ = test_support::K8sStateDir() + "/kubeconfig";
    if (!fs::exists(kubeconfig_)) GTEST_SKIP() << "no test cluster: " << kubeconfig_ << " is missing";
    auto client = ClusterClient(kubeconfig_);
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
    auto cq = client_->Get(ClusterQueueKind(), "", "gpu");
    if (!cq) GTEST_SKIP() << "the test cluster runs without Kueue (tests/k8s/cluster up --with-kueue): "
                          << cq.error().message();
    run_id_ = LiveRunId("kueue-" + GetParam(), 12);
    dir_ = fs::temp_directory_path() / ("sluice-kueue-" + run_id_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    if (client_ && !run_id_.empty()) {
      for (const auto* kind : {&k8s::JobKind(), &k8s::PodKind()})
        (void)client_->DeleteCollection(*kind, kNamespace, operators::RunSelector(run_id_),
                                        k8s::Propagation::kBackground);
    }
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
  }

  std::unique_ptr<SluiceProcess> Start(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--store", (dir_ / "store").string()};
    all.insert(all.end(), args.begin(), args.end());
    int n = ++processes_;
    return std::make_unique<SluiceProcess>(all, dir_ / ("out" + std::to_string(n)),
                                           dir_ / ("err" + std::to_string(n)));
  }

  // `sluice status RUN EXTRA...`'s output; with `must_work`, a failure is a
  // test failure (before the run has written its store, status fails).
  std::string Status(const std::vector<std::string>& extra = {}, bool must_work = true) {
    std::vector<std::string> args = {"status", run_id_};
    args.insert(args.end(), extra.begin(), extra.end());
    auto p = Start(args);
    const int code = p->Wait(std::chrono::seconds(60));
    if (must_work) {
      EXPECT_EQ(code, 0) << p->err();
    }
    return p->out();
  }

  static constexpr char kNamespace[] = "team-a";
  std::string kubeconfig_, run_id_;
  fs::path dir_;
  std::unique_ptr<k8s::Client> client_;
  int processes_ = 0;
};

TEST_P(KueueLiveTest, SixGpuStepsShareTwoGpusThroughTheQueue) {
  const fs::path file = dir_ / "pipeline.yaml";
  std::ofstream(file) << "apiVersion: sluice.dev/v1\n"
                         "kind: Pipeline\n"
                         "metadata: {name: kueue-fanout}\n"
                         "defaults:\n"
                         "  kubernetes:\n"
                         "    object: " << GetParam() << "\n"
                         "    queue: team-a\n"
                         "    podAnnotations: {sluice.dev/kwok-duration: 8s}\n"
                         "steps:\n"
                         "  - name: train\n"
                         "    image: python:3.11-slim\n"
                         "    command: [python3, train.py]\n"
                         "    foreach: [1, 2, 3, 4, 5, 6]\n"
                         "    resources: {gpu: 1}\n"
                         "    pendingTimeout: 10s\n";

  // Kueue's view: every event of the namespace's Workloads, in etcd's order.
  std::mutex mu;
  std::map<std::string, bool> holding;  // Workload of this run -> quota reserved, not finished
  std::map<std::string, bool> finished;
  int most_holding = 0;
  k8s::WatchHandlers h;
  h.on_event = [&](const k8s::WatchEvent& e) {
    const Json& meta = e.object["metadata"];
    bool ours = false;  // owned by an object of this run: "<run id>-<instance>-..."
    for (const auto& o : meta.value("ownerReferences", Json::array()))
      ours = ours || o.value("name", "").rfind(run_id_ + "-", 0) == 0;
    if (!ours) return;
    std::lock_guard<std::mutex> lock(mu);
    const std::string name = meta.value("name", "");
    const bool done = ConditionTrue(e.object, "Finished");
    holding[name] = e.type != k8s::WatchEvent::Type::kDeleted && ConditionTrue(e.object, "QuotaReserved") && !done;
    if (done) finished[name] = true;
    int n = static_cast<int>(std::count_if(holding.begin(), holding.end(), [](const auto& kv) { return kv.second; }));
    most_holding = std::max(most_holding, n);
  };
  auto watcher = client_->Watch(k8s::KueueWorkloadKind(), kNamespace, "", h);

  auto run = Start({"run", "-q", "--executor", "kubernetes", "--kubeconfig", kubeconfig_, "--namespace",
                    kNamespace, "--run-id", run_id_, file.string()});

  // A step waiting behind others, as `sluice status` shows it (positions 2
  // to 4: 2 of the 6 hold the GPUs, at least one more waits before it).
  const std::regex queued(R"((train\[\d\]) +Queued +1 +.*queued in team-a \(Kueue: pending admission, position ([2-4])\))");
  std::string table;
  std::smatch m;
  const bool seen = test_support::WaitUntil(
      [&] {
        table = Status({}, /*must_work=*/false);
        return std::regex_search(table, m, queued);
      },
      std::chrono::seconds(120));
  EXPECT_TRUE(seen) << "no step shown as queued; last status:\n" << table;
  if (seen) std::cout << "a waiting step, as `sluice status` showed it:\n" << table;

  ASSERT_EQ(run->Wait(std::chrono::minutes(5)), 0) << run->out() << run->err();
  EXPECT_TRUE(test_support::WaitUntil(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return finished.size() == 6;
      },
      std::chrono::seconds(60)));
  watcher->Stop();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(holding.size(), 6u);
    EXPECT_EQ(most_holding, 2) << "Kueue held quota for more than 2 GPU steps at once";
  }

  // sluice's records: every step succeeded on attempt 1, never more than 2
  // running at once (a queued step starts when it leaves the queue).
  Json status = Json::parse(Status({"--format", "json"}));
  std::vector<std::pair<std::string, std::string>> spans;
  ASSERT_EQ(status["steps"].size(), 6u) << status.dump(2);
  for (const auto& s : status["steps"]) {
    EXPECT_EQ(s["phase"], "Succeeded") << s.dump();
    EXPECT_EQ(s["attempts"], 1) << s.dump();
    spans.push_back({s["started_at"].get<std::string>(), s["finished_at"].get<std::string>()});
  }
  EXPECT_EQ(MaxOverlap(spans), 2) << status.dump(2);
}

INSTANTIATE_TEST_SUITE_P(Object, KueueLiveTest, ::testing::Values("pod", "job"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace sluice
