#pragma once
// Test helpers shared by the tests against the live test cluster
// (tests/k8s/cluster): where its kubeconfigs are, an API client with the
// admin kubeconfig, and a run's objects as its labels name them.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "operators/kubernetes/manifests.h"

namespace sluice::test_support {

// The test cluster's state directory (kubeconfig, kubeconfig-limited):
// $SLUICE_K8S_STATE, else /tmp/sluice-k8s, as tests/k8s/cluster uses.
inline std::string K8sStateDir() {
  const char* s = std::getenv("SLUICE_K8S_STATE");
  return s != nullptr && *s != '\0' ? s : "/tmp/sluice-k8s";
}

// A run id for the current test, unique per process and usable in object
// names: "<prefix>-<pid>-<the test's name, lower case, at most name_chars>"
// (a parameterised test's name without its "/<param>": put the parameter in
// the prefix).
inline std::string LiveRunId(const std::string& prefix, size_t name_chars) {
  std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  test = test.substr(0, test.find('/'));
  std::transform(test.begin(), test.end(), test.begin(), ::tolower);
  return prefix + "-" + std::to_string(::getpid()) + "-" + test.substr(0, name_chars);
}

// An API client that reads `kubeconfig`. Errors: LoadRestConfig's and
// Client::Create's.
inline Result<std::unique_ptr<k8s::Client>> ClusterClient(const std::string& kubeconfig) {
  k8s::KubeconfigOptions options;
  options.kubeconfig = kubeconfig;
  auto config = k8s::LoadRestConfig(options);
  if (!config) return Error(config.error());
  return k8s::Client::Create(*config);
}

// Namespaces (cluster-scoped), for tests that make one of their own.
inline const k8s::ResourceKind& NamespaceKind() {
  static const k8s::ResourceKind kind{"v1", "Namespace", "namespaces", false};
  return kind;
}

// Creates namespace `name`. Errors: the client's.
inline Status CreateNamespace(k8s::Client& client, const std::string& name) {
  auto created = client.Create(NamespaceKind(), "",
                               {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}});
  return created ? Status::Ok() : created.error();
}

// The objects of `kind` in namespace `ns` labelled with run `run_id`:
// name -> "step/attempt" (their sluice.dev/step and sluice.dev/attempt
// labels). A failed list is a test failure and gives {}.
inline std::map<std::string, std::string> RunObjects(k8s::Client& client, const k8s::ResourceKind& kind,
                                                     const std::string& ns, const std::string& run_id) {
  std::map<std::string, std::string> out;
  auto list = client.List(kind, ns, operators::RunSelector(run_id));
  EXPECT_TRUE(list) << list.error().ToString();
  if (!list) return out;
  for (const auto& item : list->items) {
    const Json& labels = item["metadata"]["labels"];
    out[item["metadata"]["name"].get<std::string>()] =
        labels.value("sluice.dev/step", "?") + "/" + labels.value("sluice.dev/attempt", "?");
  }
  return out;
}

// Checks `done` every 20 ms until it holds or `bound` passes, for state only
// readable by asking (e.g. `sluice status`). Returns whether it held.
inline bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds bound) {
  for (auto deadline = std::chrono::steady_clock::now() + bound;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace sluice::test_support
