// sluice-serving: the deploy and traffic-validation operators, run by the
// runner as a step's process (see docs/deploy.md for the contract):
//
//   sluice-serving deploy   --config FILE|JSON [--out DIR]
//   sluice-serving validate --config FILE|JSON [--out DIR]
//   sluice-serving status   --service NAME
//   sluice-serving undeploy --service NAME
//   sluice-serving manifests --config FILE|JSON   (Kubernetes objects, dry run)
//   sluice-serving proxy ...                      (internal: the canary proxy)
//
// State lives in the sluice store: --state-dir, else $SLUICE_STATE_DIR (the
// runner sets it), else .sluice in the current directory. Exit status: 0 done;
// 1 the operation failed (a deploy that did not become ready, a validation
// that failed and was rolled back); 2 bad usage or config.

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "operators/serving/canary_proxy.h"
#include "operators/serving/deploy.h"
#include "operators/serving/k8s_manifests.h"
#include "operators/serving/validate.h"
#include "engine/store/open_store.h"
#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "operators/serving/k8s_deploy.h"

namespace {

using sluice::Json;
using sluice::Result;
using sluice::Status;
namespace serving = sluice::serving;

constexpr int kFailed = 1;
constexpr int kUsage = 2;

int Fail(const std::string& command, const Status& status) {
  std::cerr << "sluice-serving " << command << ": error: " << status.message() << "\n";
  return status.code() == sluice::StatusCode::kInvalidArgument ? kUsage : kFailed;
}

Result<Json> ReadConfig(const std::string& text) {
  std::string content = text;
  std::string where = "--config";
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') {
    std::ifstream in(text);
    if (!in) {
      return sluice::Error(Status::InvalidArgument("--config " + text +
                                                   ": not a readable file and not a JSON object"));
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    content = buffer.str();
    where = text;
  }
  try {
    return Json::parse(content);
  } catch (const std::exception& e) {
    return sluice::Error(Status::InvalidArgument(where + ": not JSON: " + e.what()));
  }
}

std::string SelfExe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

struct Context {
  serving::ServingEnv env;
  sluice::StorePtr store;  // env.store points here
};

Status Setup(const std::string& state_dir_flag, bool open_store, Context* ctx) {
  std::string state_dir = state_dir_flag;
  if (state_dir.empty() && std::getenv("SLUICE_STATE_DIR")) state_dir = std::getenv("SLUICE_STATE_DIR");
  // Otherwise the store every sluice command uses by default: .sluice here.
  const bool defaulted = state_dir.empty();
  if (defaulted) state_dir = ".sluice";
  ctx->env.state_dir = std::filesystem::absolute(state_dir).lexically_normal().string();
  if (defaulted && !std::filesystem::is_directory(ctx->env.state_dir)) {
    return Status::InvalidArgument("no sluice store in " + ctx->env.state_dir +
                                   ": run this where the pipeline ran, or pass --state-dir "
                                   "(or set SLUICE_STATE_DIR)");
  }
  ctx->env.self_exe = SelfExe();
  if (open_store) {
    auto store = sluice::OpenStore(ctx->env.state_dir);
    if (!store) return store.error().WithContext("opening the store in " + ctx->env.state_dir);
    ctx->store = std::move(*store);
    ctx->env.store = ctx->store.get();
  }
  return Status::Ok();
}

// A cluster client from a `kubernetes:` config section (kubeconfig,
// kubeconfig_env, context), else as kubectl finds one.
Result<std::unique_ptr<sluice::k8s::Client>> KubernetesClient(const Json& kubernetes) {
  sluice::k8s::KubeconfigOptions kube;
  kube.kubeconfig = kubernetes.value("kubeconfig", "");
  // The $KUBECONFIG of the sluice run that started this program.
  if (kubernetes.contains("kubeconfig_env")) kube.kubeconfig_env = kubernetes.value("kubeconfig_env", "");
  kube.context = kubernetes.value("context", "");
  auto rest = sluice::k8s::LoadRestConfig(kube);
  if (!rest) return sluice::Error(rest.error());
  return sluice::k8s::Client::Create(*rest);
}


int RunProxy(const std::string& service, const std::string& bind, int port, int admin_port,
             const std::string& token_file) {
  // Signals are taken by sigwait in this thread only.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  auto token = serving::ReadTokenFile(token_file);
  if (!token) return Fail("proxy", token.error());
  serving::CanaryProxyOptions options;
  options.service = service;
  options.bind = bind;
  options.port = port;
  options.admin_port = admin_port;
  options.token = *token;
  auto proxy = serving::CanaryProxy::Start(options);
  if (!proxy) return Fail("proxy", proxy.error());
  std::cerr << "sluice-serving proxy: service " << service << " on " << bind << ":"
            << (*proxy)->port() << ", admin on 127.0.0.1:" << (*proxy)->admin_port() << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  std::cerr << "sluice-serving proxy: signal " << sig << ", stopping" << std::endl;
  (*proxy)->Stop();
  return 0;
}

}  // namespace

constexpr const char* kStateDirHelp =
    "the sluice store (default: $SLUICE_STATE_DIR, else .sluice in the current directory)";

int main(int argc, char** argv) {
  CLI::App app{"sluice-serving: deploy models and validate them on live traffic"};
  app.set_version_flag("--version", SLUICE_VERSION);
  app.require_subcommand(1);
  std::string config_text, out_dir = ".", state_dir, service;

  auto* deploy = app.add_subcommand("deploy", "deploy a model (local or Kubernetes)");
  deploy->add_option("--config", config_text, "the deploy config: a JSON file or JSON text")->required();
  deploy->add_option("--out", out_dir, "where the output files go (default: .)");
  deploy->add_option("--state-dir", state_dir, kStateDirHelp);

  auto* validate = app.add_subcommand("validate", "validate a canary and roll it out or back");
  validate->add_option("--config", config_text, "the validation config: a JSON file or JSON text")->required();
  validate->add_option("--out", out_dir, "where the metrics and report go (default: .)");
  validate->add_option("--state-dir", state_dir, kStateDirHelp);

  auto* status = app.add_subcommand("status", "print a service's state as JSON");
  status->add_option("--service", service, "the service")->required();
  status->add_option("--state-dir", state_dir, kStateDirHelp);

  auto* undeploy = app.add_subcommand("undeploy", "stop a service's servers and proxy");
  undeploy->add_option("--service", service, "the service")->required();
  undeploy->add_option("--state-dir", state_dir, kStateDirHelp);
  std::string undeploy_executor = "local", undeploy_namespace, kubeconfig, kube_context;
  undeploy->add_option("--executor", undeploy_executor, "local (default) or kubernetes")
      ->check(CLI::IsMember({"local", "kubernetes"}));
  undeploy->add_option("-n,--namespace", undeploy_namespace,
                       "Kubernetes namespace (default: the context's, else default)");
  undeploy->add_option("--kubeconfig", kubeconfig, "default: $KUBECONFIG, ~/.kube/config");
  undeploy->add_option("--context", kube_context, "default: the current context");

  auto* manifests = app.add_subcommand("manifests", "print the Kubernetes objects a deploy makes");
  manifests->add_option("--config", config_text, "the deploy config")->required();

  std::string bind = "127.0.0.1", token_file;
  int port = 0, admin_port = 0;
  auto* proxy = app.add_subcommand("proxy", "run a service's canary proxy (started by deploy)");
  proxy->add_option("--service", service)->required();
  proxy->add_option("--bind", bind);
  proxy->add_option("--port", port);
  proxy->add_option("--admin-port", admin_port);
  proxy->add_option("--token-file", token_file)->required();

  CLI11_PARSE(app, argc, argv);

  if (*proxy) return RunProxy(service, bind, port, admin_port, token_file);

  if (*manifests) {
    auto json = ReadConfig(config_text);
    if (!json) return Fail("manifests", json.error());
    auto config = serving::ParseDeployConfig(*json);
    if (!config) return Fail("manifests", config.error());
    auto objects = serving::BuildKubernetesObjects(*config);
    if (!objects) return Fail("manifests", objects.error());
    std::cout << objects->dump(2) << "\n";
    return 0;
  }

  // Config errors first: they are the user's to fix, whatever the environment.
  Json config_json;
  if (*deploy || *validate) {
    auto json = ReadConfig(config_text);
    if (!json) return Fail(*deploy ? "deploy" : "validate", json.error());
    config_json = *json;
    Status parsed = *deploy ? (serving::ParseDeployConfig(config_json).has_value()
                                   ? Status::Ok()
                                   : serving::ParseDeployConfig(config_json).error())
                            : (serving::ParseValidationConfig(config_json).has_value()
                                   ? Status::Ok()
                                   : serving::ParseValidationConfig(config_json).error());
    if (!parsed.ok()) return Fail(*deploy ? "deploy" : "validate", parsed);
  }

  Context ctx;
  Status setup = Setup(state_dir, *deploy || *validate || *undeploy, &ctx);
  if (!setup.ok()) return Fail(app.get_subcommands().front()->get_name(), setup);

  if (*status) {
    auto state = serving::LoadServiceState(ctx.env.state_dir, service);
    if (!state) return Fail("status", state.error());
    if (!state->has_value()) {
      return Fail("status", Status::NotFound("service " + service + " is not deployed"));
    }
    std::cout << serving::ToJson(**state).dump(2) << "\n";
    return 0;
  }
  if (*undeploy) {
    Status s;
    if (undeploy_executor == "kubernetes") {
      auto client = KubernetesClient(Json{{"kubeconfig", kubeconfig}, {"context", kube_context}});
      if (!client) return Fail("undeploy", client.error());
      std::string ns = !undeploy_namespace.empty()         ? undeploy_namespace
                       : !(*client)->config().namespace_.empty() ? (*client)->config().namespace_
                                                                 : "default";
      serving::RunContext run;
      if (const char* id = std::getenv("SLUICE_RUN_ID")) run.run_id = id;
      if (const char* instance = std::getenv("SLUICE_INSTANCE")) run.instance = instance;
      s = serving::UndeployKubernetes(service, ns, **client, ctx.env, run);
    } else {
      s = serving::Undeploy(service, ctx.env);
    }
    if (!s.ok()) return Fail("undeploy", s);
    std::cerr << "sluice-serving undeploy: service " << service << " stopped\n";
    return 0;
  }
  if (*deploy) {
    auto config = serving::ParseDeployConfig(config_json);
    if (!config) return Fail("deploy", config.error());
    Result<serving::DeployResult> result;
    if (config->executor == "kubernetes") {
      auto client = KubernetesClient(config->kubernetes);
      if (!client) return Fail("deploy", client.error());
      result = serving::DeployKubernetes(*config, **client, ctx.env);
    } else {
      result = serving::DeployLocal(*config, ctx.env);
    }
    if (!result) return Fail("deploy", result.error());
    Status written = serving::WriteDeployOutputs(*result, out_dir);
    if (!written.ok()) return Fail("deploy", written);
    std::cerr << "sluice-serving deploy: service " << result->service << " version "
              << result->version << " (" << result->model_digest << ") serves "
              << result->traffic_percent << "% at " << result->endpoint << " (" << result->mode
              << ", server " << result->candidate_url << ")"
              << (result->note.empty() ? "" : "; " + result->note) << "\n";
    return 0;
  }
  if (*validate) {
    auto config = serving::ParseValidationConfig(config_json);
    if (!config) return Fail("validate", config.error());
    Result<serving::ValidationOutcome> outcome;
    if (config->executor == "kubernetes") {
      auto client = KubernetesClient(config->kubernetes);
      if (!client) return Fail("validate", client.error());
      outcome = serving::ValidateKubernetes(*config, **client, ctx.env);
    } else {
      outcome = serving::ValidateRollout(*config, ctx.env);
    }
    if (!outcome) return Fail("validate", outcome.error());
    Status written = serving::WriteValidationOutputs(*config, *outcome, out_dir);
    if (!written.ok()) return Fail("validate", written);
    if (!outcome->passed) {
      std::cerr << "sluice-serving validate: error: " << outcome->message << "\n";
      return kFailed;
    }
    std::cerr << "sluice-serving validate: " << outcome->message << "\n";
    return 0;
  }
  return kUsage;
}
