// Fuzz target: kubeconfig files (executors/kubernetes/api/kubeconfig.h), loaded
// the way `--kubeconfig FILE` loads them, and the ExecCredential JSON an exec
// plugin prints. Nothing here runs a plugin.

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "executors/kubernetes/api/kubeconfig.h"

namespace {

std::string g_path;  // the kubeconfig file each input is written to

void RemoveDir() { std::filesystem::remove_all(std::filesystem::path(g_path).parent_path()); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // insecure-skip-tls-verify warns on every load
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/sluice-fuzz-kubeconfig-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) std::abort();
  g_path = dir + "/config";
  std::atexit(RemoveDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream out(g_path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  sluice::k8s::KubeconfigOptions options;
  options.kubeconfig = g_path;
  options.service_account_dir = "/nonexistent";
  (void)sluice::k8s::LoadRestConfig(options);
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)sluice::k8s::ParseExecCredential(text, "client.authentication.k8s.io/v1");
  return 0;
}
