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
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
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

// The set-up shared by the tests of `sluice serve` against the live cluster:
// a namespace of the test's own and a temporary directory holding
// server.yaml with the test token, both named after a tag unique to the
// test ("<pid>-<random>"). `Base` is ::testing::Test or TestWithParam<T>.
template <class Base>
class LiveServeFixture : public Base {
 protected:
  // Skips the test when the cluster's kubeconfig is absent; else makes
  // namespace "<ns_prefix>-<tag>" and directory
  // "<temp>/<dir_prefix>-<tag>" (with `subdir` in it when not empty). The
  // caller's SetUp returns when IsSkipped() or HasFatalFailure().
  void SetUpSandbox(const std::string& ns_prefix, const std::string& dir_prefix, const std::string& subdir,
                    const char* token_sha256) {
    kubeconfig_ = K8sStateDir() + "/kubeconfig";
    if (!std::filesystem::exists(kubeconfig_))
      GTEST_SKIP() << "no test cluster: " << kubeconfig_ << " is missing (run tests/k8s/cluster up, or ctest -L k8s)";
    std::mt19937_64 random(std::random_device{}());
    tag_ = std::to_string(::getpid()) + "-" + std::to_string(random() % 100000);
    ns_ = ns_prefix + "-" + tag_;
    dir_ = std::filesystem::temp_directory_path() / (dir_prefix + "-" + tag_);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(subdir.empty() ? dir_ : dir_ / subdir);
    std::ofstream(dir_ / "server.yaml") << "tokens:\n  - name: test\n    sha256: " << token_sha256 << "\n";
    auto client = ClusterClient(kubeconfig_);
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
    Status created = CreateNamespace(*client_, ns_);
    ASSERT_TRUE(created.ok()) << created.ToString();
  }

  // Deletes the namespace (in the background) and, when the test passed,
  // the directory.
  void TearDownSandbox() {
    if (client_) (void)client_->Delete(NamespaceKind(), "", ns_, k8s::Propagation::kBackground);
    if (!dir_.empty() && !this->HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string kubeconfig_;
  std::string tag_;
  std::string ns_;
  std::filesystem::path dir_;
  std::unique_ptr<k8s::Client> client_;
};

}  // namespace sluice::test_support
