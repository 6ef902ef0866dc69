#include "operators/serving/deploy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <regex>
#include <thread>

#include <httplib.h>

#include "operators/serving/http_error.h"

#include "engine/quantity.h"
#include "engine/sha256.h"

namespace sluice::serving {
namespace fs = std::filesystem;

namespace {

std::string Trunc12(const std::string& digest) {
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  return hex.substr(0, 12);
}

std::string DescribeBackend(const BackendState& b) {
  return "version " + b.version + " (" + b.model_digest + ", " + b.url + ")";
}

}  // namespace

Result<Duration> ParseConfigDuration(const Json& value, const std::string& field) {
  if (value.is_number()) {
    double seconds = value.get<double>();
    if (seconds < 0) return Error(Status::InvalidArgument(field + ": must not be negative"));
    return Duration(static_cast<int64_t>(std::llround(seconds * 1000)));
  }
  if (value.is_string()) {
    // The DSL's duration syntax, so a step's config reads like its timeout.
    auto d = ParseDuration(value.get<std::string>());
    if (!d) return Error(Status::InvalidArgument(field + ": " + d.error().message()));
    return *d;
  }
  return Error(Status::InvalidArgument(field + ": want a duration like \"30s\" or a number of "
                                       "seconds"));
}

std::string SubstitutePlaceholders(const std::string& text,
                                   const std::map<std::string, std::string>& values) {
  static const std::regex kPattern(R"(\{\{\s*([a-z_]+)\s*\}\}|\$\{([a-z_]+)\})");
  std::string out;
  auto begin = std::sregex_iterator(text.begin(), text.end(), kPattern);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    std::string name = m[1].matched ? m[1].str() : m[2].str();
    auto found = values.find(name);
    out += text.substr(last, m.position(0) - last);
    out += found != values.end() ? found->second : m.str(0);
    last = m.position(0) + m.length(0);
  }
  out += text.substr(last);
  return out;
}

Result<DeployConfig> ParseDeployConfig(const Json& input) {
  const Json& j = input.contains("deploy") && input["deploy"].is_object() ? input["deploy"] : input;
  DeployConfig c;
  auto bad = [](const std::string& field, const std::string& what) {
    return Error(Status::InvalidArgument("deploy." + field + ": " + what));
  };
  if (!j.is_object()) return bad("", "the deploy config must be an object");
  try {
    if (!j.contains("service") || !j["service"].is_string()) {
      return bad("service", "required: the service name, e.g. service: breast-cancer");
    }
    c.service = j["service"].get<std::string>();
    SLUICE_RETURN_IF_ERROR_RESULT(ValidateServiceName(c.service).WithContext("deploy.service"));
    c.executor = j.value("executor", "local");
    if (c.executor != "local" && c.executor != "kubernetes") {
      return bad("executor", "'" + c.executor + "' is not local or kubernetes");
    }
    if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
      return bad("model",
                 "required: the model artifact, e.g. model: \"{{ steps.select.outputs.artifacts."
                 "best_model }}\"");
    }
    c.model = j["model"].get<std::string>();
    c.model_digest = j.value("model_digest", "");
    c.version = j.value("version", "");
    const Json serve = j.value("serve", Json::object());
    if (!serve.is_object()) return bad("serve", "must be an object with command: [...] or image");
    if (serve.contains("command")) {
      if (!serve["command"].is_array() || serve["command"].empty()) {
        return bad("serve.command", "must be a non-empty list (argv), e.g. [python3, serve.py, "
                                    "--model, \"{{model}}\", --port, \"{{port}}\"]");
      }
      for (const auto& a : serve["command"]) {
        if (!a.is_string() && !a.is_number()) return bad("serve.command", "items must be strings");
        c.command.push_back(a.is_string() ? a.get<std::string>() : a.dump());
      }
    }
    if (serve.contains("env")) {
      for (const auto& [k, v] : serve["env"].items()) {
        c.env[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
    c.workdir = serve.value("workdir", "");
    c.image = serve.value("image", "");
    if (c.executor == "local" && c.command.empty()) {
      return bad("serve.command", "required for a local deploy: the server's argv");
    }
    if (c.executor == "kubernetes" && c.image.empty()) {
      return bad("serve.image", "required on Kubernetes: the serving image");
    }
    const Json readiness = j.value("readiness", Json::object());
    c.readiness_path = readiness.value("path", "/healthz");
    if (c.readiness_path.empty() || c.readiness_path[0] != '/') {
      return bad("readiness.path", "must start with '/', e.g. /healthz");
    }
    if (readiness.contains("timeout")) {
      auto t = ParseConfigDuration(readiness["timeout"], "deploy.readiness.timeout");
      if (!t) return Error(t.error());
      c.readiness_timeout = *t;
    }
    std::string mode = j.value("mode", "replace");
    if (mode == "replace") {
      c.mode = DeployMode::kReplace;
    } else if (mode == "canary") {
      c.mode = DeployMode::kCanary;
    } else {
      return bad("mode", "'" + mode + "' is not replace or canary");
    }
    if (j.contains("traffic")) {
      if (!j["traffic"].is_number()) return bad("traffic", "must be a number (percent)");
      c.traffic = j["traffic"].get<double>();
      if (!(c.traffic > 0 && c.traffic < 100)) {
        return bad("traffic", "the canary share must be between 0 and 100 (exclusive), e.g. 10");
      }
    }
    const Json proxy = j.value("proxy", Json::object());
    c.proxy_port = proxy.value("port", 0);
    c.proxy_bind = proxy.value("bind", "127.0.0.1");
    const Json run = j.value("run", Json::object());
    c.run.run_id = run.value("id", "");
    c.run.instance = run.value("instance", "");
    c.run.execution_id = run.value("execution_id", int64_t{0});
    c.run.code_archive = run.value("code_archive", "");
    c.run.code_dir = run.value("code_dir", "");
    c.kubernetes = j.value("kubernetes", Json::object());
  } catch (const std::exception& e) {
    return Error(Status::InvalidArgument(std::string("deploy: ") + e.what()));
  }
  if (c.run.run_id.empty() && std::getenv("SLUICE_RUN_ID")) c.run.run_id = std::getenv("SLUICE_RUN_ID");
  if (c.run.instance.empty() && std::getenv("SLUICE_INSTANCE")) {
    c.run.instance = std::getenv("SLUICE_INSTANCE");
  }
  return c;
}

Status WaitReady(const std::string& url, const std::string& path, Duration timeout,
                 const ProcessId* process) {
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + timeout;
  std::string last = "no answer yet";
  auto backoff = std::chrono::milliseconds(20);
  httplib::Client client(url);
  client.set_connection_timeout(std::chrono::seconds(1));
  while (true) {
    if (process != nullptr) {
      if (auto ended = ExitDescription(*process)) {
        return Status::FailedPrecondition("the server " + *ended + " before it was ready");
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    client.set_read_timeout(std::min<Duration>(left, std::chrono::seconds(5)));
    auto r = client.Get(path);
    if (r && r->status >= 200 && r->status < 300) return Status::Ok();
    last = r ? "HTTP " + std::to_string(r->status) : DescribeHttpError(r.error());
    left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    // Readiness is only observable by asking, so this is a bounded, backed-off poll.
    std::this_thread::sleep_for(std::min<Duration>(backoff, left));
    backoff = std::min<Duration>(backoff * 2, std::chrono::milliseconds(500));
  }
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  return Status::DeadlineExceeded("GET " + url + path + " did not answer 2xx within " +
                                  std::to_string(timeout.count()) + "ms (waited " +
                                  std::to_string(waited.count()) + "ms; last: " + last + ")");
}

Status RecordDeployment(const ServingEnv& env, DeploymentRecord record) {
  if (env.store == nullptr) return Status::Ok();
  record.at = std::chrono::system_clock::now();
  auto id = env.store->RecordDeployment(record);
  if (!id) return id.error().WithContext("recording the deployment in the store");
  return Status::Ok();
}

namespace {

// Weights in hundredths of a percent, reduced by their gcd so the proxy's
// round-robin cycle is as short as possible (10/90 -> 1/9).
std::vector<ProxyBackend> BackendsFor(const ServiceState& state) {
  std::vector<ProxyBackend> out;
  for (const auto* b : {state.stable ? &*state.stable : nullptr,
                        state.candidate ? &*state.candidate : nullptr}) {
    if (b == nullptr) continue;
    out.push_back({b->name, b->url, std::llround(b->traffic_percent * 100)});
  }
  int64_t g = 0;
  for (const auto& b : out) g = std::gcd(g, b.weight);
  if (g > 1) {
    for (auto& b : out) b.weight /= g;
  }
  return out;
}

Status StartProxy(ServiceState& state, const ServingEnv& env, int requested_port,
                  const std::string& bind) {
  auto dir = ServiceDir(env.state_dir, state.service, /*create=*/true);
  if (!dir) return dir.error();
  ProxyState proxy;
  proxy.bind = bind;
  if (state.proxy) {
    // Same endpoint as before: clients keep their URL across restarts.
    proxy.port = state.proxy->port;
    proxy.bind = state.proxy->bind;
  } else if (requested_port != 0) {
    proxy.port = requested_port;
  } else {
    auto port = FindFreePort(bind);
    if (!port) return port.error();
    proxy.port = *port;
  }
  auto admin_port = FindFreePort("127.0.0.1");
  if (!admin_port) return admin_port.error();
  proxy.admin_port = *admin_port;
  proxy.token_file = *dir + "/admin-token";
  proxy.log = *dir + "/proxy.log";
  auto token = WriteNewTokenFile(proxy.token_file);
  if (!token) return token.error();
  if (env.self_exe.empty()) return Status::Internal("no sluice-serving binary to run the proxy");
  SpawnOptions spawn;
  spawn.argv = {env.self_exe,   "proxy",
                "--service",    state.service,
                "--bind",       proxy.bind,
                "--port",       std::to_string(proxy.port),
                "--admin-port", std::to_string(proxy.admin_port),
                "--token-file", proxy.token_file};
  spawn.log_path = proxy.log;
  spawn.workdir = *dir;
  auto pid = SpawnDetached(spawn);
  if (!pid) return pid.error().WithContext("starting the canary proxy of " + state.service);
  proxy.process = *pid;
  Status ready = WaitReady("http://127.0.0.1:" + std::to_string(proxy.admin_port), "/healthz",
                           std::chrono::seconds(10), &proxy.process);
  if (!ready.ok()) {
    StopProcess(proxy.process, std::chrono::seconds(1));
    return Status::FailedPrecondition("the canary proxy of " + state.service + " on " +
                                      proxy.bind + ":" + std::to_string(proxy.port) +
                                      " did not start: " + ready.message() + "; its log " +
                                      proxy.log + " ends:\n" + TailFile(proxy.log, 10));
  }
  state.proxy = proxy;
  return Status::Ok();
}

}  // namespace

Status EnsureProxyAndApply(ServiceState& state, const ServingEnv& env, int requested_port,
                           const std::string& bind) {
  if (!state.proxy || !IsAlive(state.proxy->process)) {
    SLUICE_RETURN_IF_ERROR(StartProxy(state, env, requested_port, bind));
  }
  auto admin = ProxyAdmin::ForProxy(*state.proxy);
  if (!admin) return admin.error();
  return admin->SetBackends(BackendsFor(state));
}

Result<DeployResult> DeployLocal(const DeployConfig& config, const ServingEnv& env) {
  const std::string& service = config.service;
  if (env.state_dir.empty()) {
    return Error(Status::FailedPrecondition(
        "no state directory: set SLUICE_STATE_DIR (the runner sets it to the project's .sluice)"));
  }
  std::error_code ec;
  if (!fs::exists(config.model, ec)) {
    return Error(Status::InvalidArgument("deploy.model: " + config.model +
                                         " does not exist (is it the path of the model "
                                         "artifact, e.g. steps.select.outputs.artifacts."
                                         "best_model?)"));
  }
  std::string model = fs::absolute(config.model).string();
  std::string digest = config.model_digest;
  if (digest.empty()) {
    if (fs::is_directory(model)) {
      return Error(Status::InvalidArgument(
          "deploy.model_digest: required when the model is a directory (" + model + ")"));
    }
    auto hex = Sha256File(model);
    if (!hex) return Error(hex.error().WithContext("hashing the model"));
    digest = "sha256:" + *hex;
  }
  std::string version = config.version;
  if (version.empty()) version = !config.run.run_id.empty() ? config.run.run_id : Trunc12(digest);

  auto lock = ServiceLock::Acquire(env.state_dir, service,
                                   config.readiness_timeout + std::chrono::seconds(30));
  if (!lock) return Error(lock.error());
  auto loaded = LoadServiceState(env.state_dir, service);
  if (!loaded) return Error(loaded.error());
  ServiceState state = loaded->value_or(ServiceState{service, {}, {}, {}});
  auto dir = ServiceDir(env.state_dir, service, /*create=*/true);
  if (!dir) return Error(dir.error());

  BackendState next;
  next.version = version;
  next.name = service + "@" + version;
  for (int n = 2; (state.stable && state.stable->name == next.name) ||
                  (state.candidate && state.candidate->name == next.name);
       ++n) {
    next.name = service + "@" + version + "." + std::to_string(n);
  }
  next.model = model;
  next.model_digest = digest;
  auto port = FindFreePort(env.host);
  if (!port) return Error(port.error());
  next.port = *port;
  next.url = "http://" + env.host + ":" + std::to_string(next.port);
  std::map<std::string, std::string> values = {{"model", model},
                                               {"port", std::to_string(next.port)},
                                               {"host", env.host},
                                               {"version", version},
                                               {"service", service}};
  for (const auto& arg : config.command) next.command.push_back(SubstitutePlaceholders(arg, values));
  std::string safe_name = next.name;
  for (char& ch : safe_name) {
    if (ch == '/' || ch == '@') ch = '_';
  }
  next.log = *dir + "/" + safe_name + ".log";
  next.deployed_at = NowRfc3339();
  next.run_id = config.run.run_id;

  SpawnOptions spawn;
  spawn.argv = next.command;
  spawn.log_path = next.log;
  spawn.workdir = config.workdir.empty() ? *dir : config.workdir;
  spawn.env = config.env;
  spawn.env["SLUICE_MODEL_PATH"] = model;
  spawn.env["SLUICE_MODEL_DIGEST"] = digest;
  spawn.env["SLUICE_SERVICE"] = service;
  spawn.env["SLUICE_VERSION"] = version;
  spawn.env["PORT"] = std::to_string(next.port);
  std::string who = "service " + service + " version " + version;
  std::string previous = state.stable ? "the previous deployment (" + DescribeBackend(*state.stable) +
                                            ") keeps serving"
                                      : "nothing was serving before";
  auto pid = SpawnDetached(spawn);
  if (!pid) {
    return Error(pid.error().WithContext(who + ": cannot start the server (deploy.serve.command)"));
  }
  next.process = *pid;
  Status ready = WaitReady(next.url, config.readiness_path, config.readiness_timeout, &next.process);
  if (ready.ok() && !GroupListensOn(next.process, next.port)) {
    // Something else answered: the port was taken between choosing and binding it.
    std::string ended = ExitDescription(next.process).value_or("is running but does not listen");
    ready = Status::FailedPrecondition("port " + std::to_string(next.port) +
                                       " answers, but not from the new server (it " + ended +
                                       "); another process took the port, deploy again");
  }
  if (!ready.ok()) {
    StopProcess(next.process, std::chrono::seconds(1));
    return Error(Status(ready.code(),
                        who + ": the model server did not become ready: " + ready.message() +
                            ". It was stopped; " + previous + ". Check deploy.serve.command and "
                            "deploy.readiness (path, timeout). Server log " + next.log +
                            " ends:\n" + TailFile(next.log, 15)));
  }

  // The new server is ready: decide the new shape of the service.
  ServiceState after = state;
  std::vector<BackendState> to_stop;
  DeployResult result;
  bool canary = config.mode == DeployMode::kCanary && state.stable.has_value();
  if (config.mode == DeployMode::kCanary && !state.stable) {
    result.note = "no stable deployment of " + service + ": deployed as stable at 100%";
  }
  if (canary) {
    if (state.candidate) to_stop.push_back(*state.candidate);
    next.traffic_percent = config.traffic;
    after.stable->traffic_percent = 100 - config.traffic;
    after.candidate = next;
  } else {
    if (state.stable) to_stop.push_back(*state.stable);
    if (state.candidate) to_stop.push_back(*state.candidate);
    next.traffic_percent = 100;
    after.stable = next;
    after.candidate.reset();
  }
  Status applied = EnsureProxyAndApply(after, env, config.proxy_port, config.proxy_bind);
  if (!applied.ok()) {
    StopProcess(next.process, std::chrono::seconds(1));
    // Put the old weights back in case the proxy took some of the change.
    if (state.proxy && after.proxy && state.proxy->process.pid == after.proxy->process.pid) {
      ServiceState restore = state;
      (void)EnsureProxyAndApply(restore, env, config.proxy_port, config.proxy_bind);
    }
    return Error(applied.WithContext(who + ": routing traffic to the new server failed; it was "
                                            "stopped and " + previous));
  }
  SLUICE_RETURN_IF_ERROR_RESULT(SaveServiceState(env.state_dir, after));
  for (const auto& old : to_stop) {
    Status s = StopProcess(old.process, env.stop_grace);
    if (!s.ok()) result.note += (result.note.empty() ? "" : "; ") + s.message();
  }

  result.service = service;
  result.endpoint = after.proxy->Endpoint();
  result.candidate_url = next.url;
  result.version = version;
  result.model_digest = digest;
  result.traffic_percent = next.traffic_percent;
  result.mode = canary ? "canary" : "replace";
  result.state = ToJson(after);

  DeploymentRecord record;
  record.service = service;
  record.namespace_ = "local";
  record.executor = "local";
  record.action = "deploy";
  record.version = version;
  record.model_digest = digest;
  record.baseline_digest = canary ? after.stable->model_digest : "";
  record.traffic_percent = next.traffic_percent;
  record.endpoint = result.endpoint;
  record.run_id = config.run.run_id;
  record.instance = config.run.instance;
  record.execution_id = config.run.execution_id;
  record.details = {{"mode", result.mode},
                    {"candidate_url", next.url},
                    {"pid", next.process.pid},
                    {"port", next.port},
                    {"model", model},
                    {"proxy_port", after.proxy->port},
                    {"replaced", Json::array()}};
  for (const auto& old : to_stop) {
    record.details["replaced"].push_back({{"version", old.version}, {"model_digest", old.model_digest}});
  }
  Status recorded = RecordDeployment(env, record);
  if (!recorded.ok()) result.note += (result.note.empty() ? "" : "; ") + recorded.ToString();
  return result;
}

Status WriteDeployOutputs(const DeployResult& result, const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  auto write = [&](const std::string& name, const std::string& value) -> Status {
    std::ofstream out(out_dir + "/" + name, std::ios::trunc);
    out << value << "\n";
    if (!out) return Status::FailedPrecondition("cannot write " + out_dir + "/" + name);
    return Status::Ok();
  };
  char traffic[32];
  std::snprintf(traffic, sizeof(traffic), "%g", result.traffic_percent);
  SLUICE_RETURN_IF_ERROR(write("endpoint", result.endpoint));
  SLUICE_RETURN_IF_ERROR(write("candidate_url", result.candidate_url));
  SLUICE_RETURN_IF_ERROR(write("version", result.version));
  SLUICE_RETURN_IF_ERROR(write("model_digest", result.model_digest));
  SLUICE_RETURN_IF_ERROR(write("traffic_percent", traffic));
  SLUICE_RETURN_IF_ERROR(write("service", result.service));
  Json all = {{"service", result.service},
              {"endpoint", result.endpoint},
              {"candidate_url", result.candidate_url},
              {"version", result.version},
              {"model_digest", result.model_digest},
              {"traffic_percent", result.traffic_percent},
              {"mode", result.mode},
              {"note", result.note},
              {"state", result.state}};
  return write("deploy.json", all.dump(2));
}

Status Undeploy(const std::string& service, const ServingEnv& env) {
  SLUICE_RETURN_IF_ERROR(ValidateServiceName(service));
  auto lock = ServiceLock::Acquire(env.state_dir, service, std::chrono::seconds(30));
  if (!lock) return lock.error();
  auto loaded = LoadServiceState(env.state_dir, service);
  if (!loaded) return loaded.error();
  if (!loaded->has_value()) {
    return Status::NotFound("service " + service + " is not deployed (no " +
                            ServiceStatePath(env.state_dir, service) + ")");
  }
  const ServiceState& state = **loaded;
  Status first;
  for (const auto* b : {state.candidate ? &*state.candidate : nullptr,
                        state.stable ? &*state.stable : nullptr}) {
    if (b == nullptr) continue;
    Status s = StopProcess(b->process, env.stop_grace);
    if (!s.ok() && first.ok()) first = s;
  }
  if (state.proxy) {
    Status s = StopProcess(state.proxy->process, env.stop_grace);
    if (!s.ok() && first.ok()) first = s;
  }
  fs::remove(ServiceStatePath(env.state_dir, service));
  DeploymentRecord record;
  record.service = service;
  record.namespace_ = "local";
  record.executor = "local";
  record.action = "undeploy";
  record.traffic_percent = 0;
  if (state.stable) {
    record.version = state.stable->version;
    record.model_digest = state.stable->model_digest;
  }
  Status recorded = RecordDeployment(env, record);
  return first.ok() ? recorded : first;
}

}  // namespace sluice::serving
