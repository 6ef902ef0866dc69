#include "engine/cli/kubernetes_options.h"

#include <cstdlib>
#include <filesystem>

namespace sluice::cli {

std::string ExecutorOf(const StepSpec& step, const std::string& default_executor,
                       const PipelineSpec& spec) {
  if (!step.executor.empty()) return step.executor;
  if (!default_executor.empty()) return default_executor;
  return spec.executor.empty() ? "local" : spec.executor;
}

bool NeedsKubernetes(const PipelineSpec& spec, const std::string& default_executor) {
  for (const auto* list : {&spec.steps, &spec.finally_steps}) {
    for (const auto& step : *list)
      if (ExecutorOf(step, default_executor, spec) == "kubernetes") return true;
  }
  return false;
}

namespace {

// The image holding sluice-launcher: --launcher-image, else the sluice
// image of this version.
std::string LauncherImage(const KubernetesFlags& flags) {
  return flags.launcher_image.empty() ? std::string("ghcr.io/sluice-dev/sluice:") + SLUICE_VERSION
                                      : flags.launcher_image;
}

// Where the store `state_dir` is on the workspace claim, relative to its
// root ("." for the root itself); "" when the host does not see the claim
// or the store is elsewhere.
std::string StoreDirOnWorkspace(const KubernetesFlags& flags, const std::string& state_dir) {
  if (flags.workspace_host_dir.empty() || state_dir.empty()) return "";
  std::error_code ec;
  const auto root = std::filesystem::absolute(flags.workspace_host_dir, ec).lexically_normal();
  const auto store = std::filesystem::absolute(state_dir, ec).lexically_normal();
  const std::string rel = store.lexically_relative(root).string();
  if (rel.empty() || rel.starts_with("..")) return "";
  return rel;
}

// Part 1 of PrepareRunForKubernetes: operator steps bound for Kubernetes run
// on this host as controllers of the cluster.
void RunOperatorsHere(PipelineSpec& spec, const KubernetesFlags& flags, const RunOptions& options) {
  for (auto* list : {&spec.steps, &spec.finally_steps}) {
    for (auto& step : *list) {
      if (!options.operator_commands.count(step.type) || !step.config.is_object()) continue;
      if (ExecutorOf(step, options.default_executor, spec) != "kubernetes") continue;
      step.executor = "local";
      if (!step.config.contains("executor")) step.config["executor"] = "kubernetes";
      Json& k = step.config["kubernetes"];
      if (k.is_null()) k = Json::object();
      if (!k.is_object()) continue;
      const std::string& ns = !flags.namespace_.empty() ? flags.namespace_ : spec.namespace_;
      if (!ns.empty() && !k.contains("namespace")) k["namespace"] = ns;
      if (!flags.kubeconfig.empty() && !k.contains("kubeconfig")) k["kubeconfig"] = flags.kubeconfig;
      // The program runs with a minimal environment: it gets this host's
      // $KUBECONFIG from its config, so it finds the cluster the Jobs went to.
      const char* kubeconfig_env = std::getenv("KUBECONFIG");
      if (flags.kubeconfig.empty() && kubeconfig_env != nullptr && *kubeconfig_env != '\0' &&
          !k.contains("kubeconfig") && !k.contains("kubeconfig_env"))
        k["kubeconfig_env"] = kubeconfig_env;
      if (!flags.context.empty() && !k.contains("context")) k["context"] = flags.context;
      // The model is on the workspace claim the steps used, where the store is.
      if (!flags.workspace_pvc.empty() && !k.contains("artifacts_pvc")) k["artifacts_pvc"] = flags.workspace_pvc;
      const std::string dir = StoreDirOnWorkspace(flags, options.state_dir);
      if (!dir.empty() && !k.contains("artifacts_dir")) k["artifacts_dir"] = dir;
      // With object storage the model comes from the bucket by digest,
      // fetched by the launcher, as the steps' inputs are.
      if (flags.artifacts.rfind("s3://", 0) == 0 && !k.contains("model_store")) {
        Json store = {{"url", flags.artifacts}, {"credentials_secret", "sluice-s3"},
                      {"image", LauncherImage(flags)}};
        if (!flags.artifacts_endpoint.empty()) store["endpoint"] = flags.artifacts_endpoint;
        k["model_store"] = std::move(store);
      }
      // The server's pods are placed as the step's own pods would be.
      if (!step.resources.node_selector.empty() && !k.contains("nodeSelector"))
        k["nodeSelector"] = step.resources.node_selector;
      if (!step.resources.tolerations.empty() && !k.contains("tolerations"))
        k["tolerations"] = step.resources.tolerations;
      // The serving image defaults to the step's image (e.g. from defaults:).
      auto serve = step.config.find("serve");
      if (step.type == "deploy" && serve != step.config.end() && serve->is_object() &&
          !serve->contains("image") && !step.image.empty()) {
        (*serve)["image"] = step.image;
      }
    }
  }
}

// Part 2: a run whose steps all go to the cluster is not bounded by this
// host's CPUs, memory, GPUs or CPU count (-j's default).
void UnboundHostBudgets(const PipelineSpec& spec, const HostLimitFlags& given, RunOptions& options) {
  for (const auto* list : {&spec.steps, &spec.finally_steps}) {
    for (const auto& step : *list)
      if (ExecutorOf(step, options.default_executor, spec) != "kubernetes") return;
  }
  constexpr int64_t kUnbounded = int64_t{1} << 50;
  if (!given.cpus) options.cpu_budget_millis = kUnbounded;
  if (!given.memory) options.memory_budget_bytes = kUnbounded;
  if (!given.gpus) options.gpu_budget = kUnbounded;
  if (!given.parallelism) options.parallelism = kKubernetesParallelism;
}

}  // namespace

void PrepareRunForKubernetes(PipelineSpec& spec, const KubernetesFlags& flags,
                             const HostLimitFlags& given, RunOptions& options) {
  RunOperatorsHere(spec, flags, options);  // first: such steps no longer run on Kubernetes
  UnboundHostBudgets(spec, given, options);
}

Status CheckFilesCanMove(const PipelineSpec& spec, const KubernetesFlags& flags,
                         const std::string& default_executor) {
  if (flags.artifacts.rfind("s3://", 0) == 0 || !flags.workspace_pvc.empty()) return Status::Ok();
  for (const auto* list : {&spec.steps, &spec.finally_steps}) {
    for (const auto& step : *list) {
      if (ExecutorOf(step, default_executor, spec) != "kubernetes") continue;
      // Files it writes first: an input may be a plain value (a component's
      // bound param).
      std::string what;
      if (!step.output_artifacts.empty()) what = "output artifact '" + step.output_artifacts[0].name + "'";
      else if (!step.output_params.empty()) what = "output parameter '" + step.output_params[0].name + "'";
      else if (step.metrics_file) what = "metrics file " + *step.metrics_file;
      else if (!step.inputs.empty()) what = "input '" + step.inputs.begin()->first + "'";
      if (what.empty()) continue;
      return Status::InvalidArgument(
          "step '" + step.name + "' runs on Kubernetes and passes files (its " + what +
          "), which need a way between pods and this host: give --artifacts s3://BUCKET/PREFIX (object storage) "
          "or --workspace-pvc CLAIM (a ReadWriteMany volume in every pod); see docs/kubernetes.md");
    }
  }
  return Status::Ok();
}

Result<KubernetesExecutorOptions> KubernetesOptionsFor(const KubernetesFlags& flags,
                                                       const PipelineSpec* spec) {
  KubernetesExecutorOptions k8s;
  k8s.kubeconfig.kubeconfig = flags.kubeconfig;
  k8s.kubeconfig.context = flags.context;
  k8s.kubeconfig.namespace_ = flags.namespace_;
  if (const char* env = std::getenv("KUBECONFIG")) k8s.kubeconfig.kubeconfig_env = env;
  if (const char* home = std::getenv("HOME")) k8s.kubeconfig.home = home;
  if (const char* host = std::getenv("KUBERNETES_SERVICE_HOST")) k8s.kubeconfig.service_host = host;
  if (const char* port = std::getenv("KUBERNETES_SERVICE_PORT")) k8s.kubeconfig.service_port = port;
  // For tests: where the in-cluster service account's files are, instead of
  // /var/run/secrets/kubernetes.io/serviceaccount (docs/server.md).
  if (const char* dir = std::getenv("SLUICE_SERVICE_ACCOUNT_DIR"); dir != nullptr && *dir != '\0')
    k8s.kubeconfig.service_account_dir = dir;
  // A step's kubernetes.namespace wins over this (KubernetesExecutor::NamespaceFor).
  k8s.manifests.namespace_ = !flags.namespace_.empty() ? flags.namespace_
                             : spec != nullptr         ? spec->namespace_
                                                       : "";
  k8s.manifests.workspace_pvc = flags.workspace_pvc;
  if (flags.artifacts.rfind("s3://", 0) == 0) {
    // Both would be mounted at /sluice in every pod.
    if (!flags.workspace_pvc.empty())
      return Error(Status::InvalidArgument(
          "--artifacts " + flags.artifacts + " and --workspace-pvc are two ways to move files between pods; "
          "give one"));
    KubernetesObjectStorage& os = k8s.manifests.object_storage;
    os.url = flags.artifacts;
    os.endpoint = flags.artifacts_endpoint;
    if (const char* e = std::getenv("SLUICE_S3_ENDPOINT"); os.endpoint.empty() && e) os.endpoint = e;
    if (const char* r = std::getenv("SLUICE_S3_REGION")) os.region = r;
    os.launcher_image = LauncherImage(flags);
  }
  if (!flags.workspace_host_dir.empty()) {
    if (flags.workspace_pvc.empty())
      return Error(Status::InvalidArgument(
          "--workspace-host-dir needs --workspace-pvc, the claim pods mount that directory from"));
    std::error_code ec;
    std::string dir =
        std::filesystem::absolute(flags.workspace_host_dir, ec).lexically_normal().string();
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    k8s.manifests.host_workspace_root = dir;
  }
  return k8s;
}

std::string WorkspaceWarning(const KubernetesExecutorOptions& options, const std::string& state_dir) {
  const std::string& root = options.manifests.host_workspace_root;
  if (root.empty() || state_dir == root || state_dir.rfind(root + "/", 0) == 0) return "";
  return "the store " + state_dir + " is not under --workspace-host-dir " + root +
         ": pods will not see the steps' directories or inputs (use --store " + root + "/.sluice)";
}

}  // namespace sluice::cli
