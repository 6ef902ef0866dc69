#include "executors/kubernetes/api/kubeconfig.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "engine/base64.h"
#include "engine/process.h"
#include "engine/text.h"

namespace sluice::k8s {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::optional<std::string> GetEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

Result<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(Status::FailedPrecondition("cannot read " + what + " " + path + ": " +
                                            std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Resolves `p` against the directory of the kubeconfig that named it.
std::string ResolvePath(const std::string& p, const std::string& config_path) {
  if (p.empty() || p[0] == '/' || config_path.empty()) return p;
  return (fs::path(config_path).parent_path() / p).lexically_normal().string();
}

// One named entry of a kubeconfig list, with the file it came from.
struct Entry {
  YAML::Node node;
  std::string file;
};

// The merged view of one or more kubeconfig files (first definition wins).
struct Merged {
  std::map<std::string, Entry> clusters, users, contexts;
  std::string current_context;
  std::vector<std::string> files;
};

std::string Where(const std::string& file, const YAML::Mark& mark) {
  if (mark.line < 0) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// The one adapter that calls yaml-cpp for kubeconfig files.
Status MergeFile(const std::string& path, Merged* merged) {
  auto text = ReadFile(path, "kubeconfig");
  if (!text) return text.error();
  try {
    YAML::Node root = YAML::Load(*text);
    if (root.IsNull()) {
      merged->files.push_back(path);
      return Status::Ok();  // an empty file is allowed, as in kubectl
    }
    if (!root.IsMap()) {
      return Status::InvalidArgument(Where(path, root.Mark()) +
                                     ": a kubeconfig must be a YAML mapping (apiVersion: v1, "
                                     "kind: Config, clusters, users, contexts)");
    }
    auto take = [&](const char* list, const char* inner, std::map<std::string, Entry>* into)
        -> Status {
      YAML::Node seq = root[list];
      if (!seq || seq.IsNull()) return Status::Ok();
      if (!seq.IsSequence()) {
        return Status::InvalidArgument(Where(path, seq.Mark()) + ": '" + list +
                                       "' must be a list of {name, " + inner + "}");
      }
      for (const auto& item : seq) {
        if (!item.IsMap() || !item["name"]) {
          return Status::InvalidArgument(Where(path, item.Mark()) + ": an entry of '" + list +
                                         "' has no name");
        }
        std::string name = item["name"].as<std::string>();
        if (into->count(name)) continue;  // first file wins
        YAML::Node body = item[inner];
        into->emplace(name, Entry{body ? body : YAML::Node(YAML::NodeType::Map), path});
      }
      return Status::Ok();
    };
    SLUICE_RETURN_IF_ERROR(take("clusters", "cluster", &merged->clusters));
    SLUICE_RETURN_IF_ERROR(take("users", "user", &merged->users));
    SLUICE_RETURN_IF_ERROR(take("contexts", "context", &merged->contexts));
    if (merged->current_context.empty() && root["current-context"] &&
        root["current-context"].IsScalar()) {
      merged->current_context = root["current-context"].as<std::string>();
    }
    merged->files.push_back(path);
    return Status::Ok();
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Where(path, e.mark) + ": invalid kubeconfig YAML: " + e.msg);
  }
}

// Reads a scalar field as a string; "" when absent. Throws YAML::Exception on
// a non-scalar, caught by the caller.
std::string Str(const YAML::Node& node, const char* key) {
  YAML::Node v = node[key];
  if (!v || v.IsNull()) return "";
  return v.as<std::string>();
}

bool Bool(const YAML::Node& node, const char* key) {
  YAML::Node v = node[key];
  if (!v || v.IsNull()) return false;
  return v.as<bool>();
}

std::vector<std::string> Keys(const std::map<std::string, Entry>& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

Status MissingName(const std::string& what, const std::string& name,
                   const std::map<std::string, Entry>& defined, const std::string& files) {
  std::string msg = what + " \"" + name + "\" is not defined in " + files;
  std::string guess = ClosestName(name, Keys(defined));
  if (!guess.empty()) {
    msg += "; did you mean \"" + guess + "\"?";
  } else if (!defined.empty()) {
    msg += " (defined: " + Join(Keys(defined), ", ") + ")";
  }
  return Status::NotFound(msg);
}

Result<ClusterConfig> BuildCluster(const std::string& name, const Entry& e) {
  ClusterConfig c;
  c.name = name;
  try {
    c.server = Str(e.node, "server");
    c.insecure_skip_tls_verify = Bool(e.node, "insecure-skip-tls-verify");
    c.tls_server_name = Str(e.node, "tls-server-name");
    std::string data = Str(e.node, "certificate-authority-data");
    std::string file = Str(e.node, "certificate-authority");
    if (!data.empty()) {
      auto pem = Base64Decode(data, e.file + ": certificate-authority-data of cluster \"" + name + "\"");
      if (!pem) return Error(pem.error());
      c.ca_pem = *pem;
      c.ca_source = e.file + " (certificate-authority-data of cluster \"" + name + "\")";
    } else if (!file.empty()) {
      std::string path = ResolvePath(file, e.file);
      auto pem = ReadFile(path, "certificate-authority of cluster \"" + name + "\" (" + e.file + ")");
      if (!pem) return Error(pem.error());
      c.ca_pem = *pem;
      c.ca_source = path;
    }
  } catch (const YAML::Exception& ex) {
    return Error(Status::InvalidArgument(Where(e.file, ex.mark) + ": cluster \"" + name +
                                         "\": " + ex.msg));
  }
  if (c.server.empty()) {
    return Error(Status::InvalidArgument(e.file + ": cluster \"" + name +
                                         "\" has no server (expected e.g. https://host:6443)"));
  }
  return c;
}

Result<UserConfig> BuildUser(const std::string& name, const Entry& e) {
  UserConfig u;
  u.name = name;
  try {
    u.token = Str(e.node, "token");
    std::string token_file = Str(e.node, "tokenFile");
    if (!token_file.empty()) u.token_file = ResolvePath(token_file, e.file);
    u.username = Str(e.node, "username");
    u.password = Str(e.node, "password");
    auto load = [&](const char* data_key, const char* file_key, std::string* out) -> Status {
      std::string data = Str(e.node, data_key);
      std::string file = Str(e.node, file_key);
      if (!data.empty()) {
        auto pem = Base64Decode(data, e.file + ": " + data_key + " of user \"" + name + "\"");
        if (!pem) return pem.error();
        *out = *pem;
      } else if (!file.empty()) {
        auto pem = ReadFile(ResolvePath(file, e.file),
                            std::string(file_key) + " of user \"" + name + "\" (" + e.file + ")");
        if (!pem) return pem.error();
        *out = *pem;
      }
      return Status::Ok();
    };
    if (Status st = load("client-certificate-data", "client-certificate", &u.client_cert_pem);
        !st.ok()) {
      return Error(st);
    }
    if (Status st = load("client-key-data", "client-key", &u.client_key_pem); !st.ok()) {
      return Error(st);
    }
    if (u.client_cert_pem.empty() != u.client_key_pem.empty()) {
      return Error(Status::InvalidArgument(
          e.file + ": user \"" + name +
          "\" has a client certificate without a key (or a key without a certificate); set both "
          "client-certificate(-data) and client-key(-data)"));
    }
    YAML::Node exec = e.node["exec"];
    if (exec && !exec.IsNull()) {
      ExecConfig x;
      x.api_version = Str(exec, "apiVersion");
      x.command = Str(exec, "command");
      if (x.command.find('/') != std::string::npos) x.command = ResolvePath(x.command, e.file);
      if (exec["args"]) {
        for (const auto& a : exec["args"]) x.args.push_back(a.as<std::string>());
      }
      if (exec["env"]) {
        for (const auto& v : exec["env"]) x.env.emplace_back(Str(v, "name"), Str(v, "value"));
      }
      x.install_hint = Str(exec, "installHint");
      x.provide_cluster_info = Bool(exec, "provideClusterInfo");
      x.interactive_mode = Str(exec, "interactiveMode");
      if (x.command.empty()) {
        return Error(Status::InvalidArgument(Where(e.file, exec.Mark()) + ": user \"" + name +
                                             "\": exec has no command"));
      }
      if (x.api_version != "client.authentication.k8s.io/v1" &&
          x.api_version != "client.authentication.k8s.io/v1beta1") {
        return Error(Status::InvalidArgument(
            Where(e.file, exec.Mark()) + ": user \"" + name + "\": exec apiVersion \"" +
            x.api_version +
            "\" is not supported; use client.authentication.k8s.io/v1 or /v1beta1"));
      }
      u.exec = std::move(x);
    }
    if (e.node["auth-provider"]) {
      return Error(Status::InvalidArgument(
          e.file + ": user \"" + name +
          "\" uses auth-provider, which Kubernetes removed; use an exec credential plugin "
          "(e.g. gke-gcloud-auth-plugin, kubelogin)"));
    }
  } catch (const YAML::Exception& ex) {
    return Error(Status::InvalidArgument(Where(e.file, ex.mark) + ": user \"" + name + "\": " +
                                         ex.msg));
  }
  return u;
}

void WarnInsecure(const RestConfig& config) {
  if (config.cluster.insecure_skip_tls_verify) {
    spdlog::warn(
        "!!! cluster \"{}\" ({}) sets insecure-skip-tls-verify: sluice will NOT verify the API "
        "server's certificate; anyone on the network path can read and change your requests "
        "and credentials. Set certificate-authority(-data) instead. !!!",
        config.cluster.name, config.cluster.server);
  }
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& s) {
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return std::nullopt;
  if (*rest == '.') {
    ++rest;
    while (*rest >= '0' && *rest <= '9') ++rest;
  }
  auto two_digits = [](const char* p) {
    return p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9';
  };
  long offset = 0;
  if (*rest == 'Z' || *rest == 'z') {
    ++rest;
  } else if (*rest == '+' || *rest == '-') {
    // Exactly "+hh:mm"; checking each character also keeps `rest` inside the
    // string (the checks stop at its terminating NUL).
    int sign = *rest == '-' ? -1 : 1;
    if (!two_digits(rest + 1) || rest[3] != ':' || !two_digits(rest + 4)) return std::nullopt;
    int hh = (rest[1] - '0') * 10 + (rest[2] - '0');
    int mm = (rest[4] - '0') * 10 + (rest[5] - '0');
    offset = sign * (hh * 3600 + mm * 60);
    rest += 6;
  } else {
    return std::nullopt;
  }
  if (*rest != '\0') return std::nullopt;
  time_t t = timegm(&tm) - offset;
  // system_clock counts nanoseconds in 64 bits (1678-2262): "never expires"
  // dates such as 2999-01-01 are capped at 2100-01-01, and dates before 1970
  // (long expired) are taken as 1970-01-01.
  t = std::clamp<time_t>(t, 0, 4102444800);
  return std::chrono::system_clock::from_time_t(t);
}

namespace {

// `key` of `doc` as a string; "" when absent or not a string (json::value
// would throw on another type).
std::string StringField(const Json& doc, const char* key) {
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::string ClosestName(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = EditDistance(name, c, EditOps::kLevenshtein);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Suggest only when at most a third of the name differs.
  if (best.empty() || best_d == 0 || best_d > std::max<size_t>(2, name.size() / 3)) return "";
  return best;
}

Result<RestConfig> LoadInClusterConfig(const KubeconfigOptions& options) {
  std::optional<std::string> host =
      options.service_host ? options.service_host : GetEnv("KUBERNETES_SERVICE_HOST");
  std::optional<std::string> port =
      options.service_port ? options.service_port : GetEnv("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return Error(Status::NotFound(
        "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset)"));
  }
  RestConfig c;
  c.in_cluster = true;
  c.source = "in-cluster service account (" + options.service_account_dir + ")";
  std::string h = *host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6
  c.cluster.name = "in-cluster";
  c.cluster.server = "https://" + h + ":" + *port;
  std::string token_path = options.service_account_dir + "/token";
  if (!fs::exists(token_path)) {
    return Error(Status::NotFound("KUBERNETES_SERVICE_HOST is set but " + token_path +
                                  " does not exist (is automountServiceAccountToken off?)"));
  }
  c.user.name = "service account";
  c.user.token_file = token_path;
  auto ca = ReadFile(options.service_account_dir + "/ca.crt", "service account CA");
  if (!ca) return Error(ca.error());
  c.cluster.ca_pem = *ca;
  c.cluster.ca_source = options.service_account_dir + "/ca.crt";
  auto ns = ReadFile(options.service_account_dir + "/namespace", "service account namespace");
  c.namespace_ = ns ? *ns : "default";
  c.namespace_.resize(TrimRight(c.namespace_).size());
  if (!options.namespace_.empty()) c.namespace_ = options.namespace_;
  return c;
}

Result<RestConfig> LoadRestConfig(const KubeconfigOptions& options) {
  std::vector<std::string> paths;
  std::string how;
  if (!options.kubeconfig.empty()) {
    if (!fs::exists(options.kubeconfig)) {
      return Error(Status::NotFound("kubeconfig " + options.kubeconfig +
                                    " (from --kubeconfig) does not exist"));
    }
    paths.push_back(options.kubeconfig);
    how = "--kubeconfig";
  } else {
    std::optional<std::string> env =
        options.kubeconfig_env ? options.kubeconfig_env : GetEnv("KUBECONFIG");
    if (env && !env->empty()) {
      std::stringstream ss(*env);
      std::string item;
      while (std::getline(ss, item, ':')) {
        if (!item.empty() && fs::exists(item)) paths.push_back(item);
      }
      how = "$KUBECONFIG";
      if (paths.empty()) {
        return Error(Status::NotFound("none of the files in $KUBECONFIG (" + *env +
                                      ") exists"));
      }
    } else {
      std::optional<std::string> home = options.home ? options.home : GetEnv("HOME");
      if (home && fs::exists(*home + "/.kube/config")) {
        paths.push_back(*home + "/.kube/config");
        how = "~/.kube/config";
      }
    }
  }
  if (paths.empty()) {
    auto in_cluster = LoadInClusterConfig(options);
    if (in_cluster) {
      WarnInsecure(*in_cluster);
      return in_cluster;
    }
    return Error(Status::NotFound(
        "no kubeconfig found: pass --kubeconfig, set $KUBECONFIG, or create ~/.kube/config "
        "(and not running in a pod: " + in_cluster.error().message() + ")"));
  }

  Merged merged;
  for (const auto& p : paths) {
    if (Status st = MergeFile(p, &merged); !st.ok()) return Error(st);
  }
  std::string files = Join(merged.files, ":");

  std::string context = options.context.empty() ? merged.current_context : options.context;
  if (context.empty()) {
    std::string msg = "no context selected: " + files + " has no current-context; pass --context";
    if (!merged.contexts.empty()) msg += " (defined: " + Join(Keys(merged.contexts), ", ") + ")";
    return Error(Status::NotFound(msg));
  }
  auto ctx = merged.contexts.find(context);
  if (ctx == merged.contexts.end()) {
    return Error(MissingName(options.context.empty() ? "current-context" : "context (--context)",
                             context, merged.contexts, files));
  }
  std::string cluster_name, user_name, ns;
  try {
    cluster_name = Str(ctx->second.node, "cluster");
    user_name = Str(ctx->second.node, "user");
    ns = Str(ctx->second.node, "namespace");
  } catch (const YAML::Exception& ex) {
    return Error(Status::InvalidArgument(Where(ctx->second.file, ex.mark) + ": context \"" +
                                         context + "\": " + ex.msg));
  }
  auto cl = merged.clusters.find(cluster_name);
  if (cl == merged.clusters.end()) {
    return Error(MissingName("cluster", cluster_name, merged.clusters, files)
                     .WithContext("context \"" + context + "\""));
  }
  RestConfig config;
  config.context = context;
  config.source = "kubeconfig " + files + " (" + how + ")";
  auto cluster = BuildCluster(cluster_name, cl->second);
  if (!cluster) return Error(cluster.error());
  config.cluster = std::move(*cluster);
  if (!user_name.empty()) {
    auto us = merged.users.find(user_name);
    if (us == merged.users.end()) {
      return Error(MissingName("user", user_name, merged.users, files)
                       .WithContext("context \"" + context + "\""));
    }
    auto user = BuildUser(user_name, us->second);
    if (!user) return Error(user.error());
    config.user = std::move(*user);
  }
  config.namespace_ = !options.namespace_.empty() ? options.namespace_
                      : !ns.empty()                ? ns
                                                   : "default";
  WarnInsecure(config);
  return config;
}

Result<Credentials> ParseExecCredential(const std::string& json_text,
                                        const std::string& expected_api_version) {
  Json doc = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error(Status::Unauthenticated(
        "the exec credential plugin did not print an ExecCredential JSON object"));
  }
  std::string api = StringField(doc, "apiVersion");
  if (std::string kind = StringField(doc, "kind"); kind != "ExecCredential") {
    return Error(Status::Unauthenticated("the exec credential plugin printed kind \"" + kind +
                                         "\", want ExecCredential"));
  }
  if (api != expected_api_version) {
    return Error(Status::Unauthenticated("the exec credential plugin printed apiVersion \"" + api +
                                         "\", but the kubeconfig asked for \"" +
                                         expected_api_version + "\""));
  }
  const Json& st = doc.contains("status") ? doc["status"] : Json();
  if (!st.is_object()) {
    return Error(Status::Unauthenticated("the exec credential plugin printed no status"));
  }
  Credentials c;
  if (st.contains("token") && st["token"].is_string()) c.token = st["token"].get<std::string>();
  if (st.contains("clientCertificateData") && st["clientCertificateData"].is_string()) {
    c.client_cert_pem = st["clientCertificateData"].get<std::string>();
  }
  if (st.contains("clientKeyData") && st["clientKeyData"].is_string()) {
    c.client_key_pem = st["clientKeyData"].get<std::string>();
  }
  if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
    return Error(Status::Unauthenticated(
        "the exec credential plugin printed clientCertificateData without clientKeyData (or "
        "the reverse); both are required"));
  }
  if (c.token.empty() && c.client_cert_pem.empty()) {
    return Error(Status::Unauthenticated(
        "the exec credential plugin printed neither status.token nor "
        "status.clientCertificateData"));
  }
  if (st.contains("expirationTimestamp") && st["expirationTimestamp"].is_string()) {
    std::string ts = st["expirationTimestamp"].get<std::string>();
    c.expiry = ParseRfc3339(ts);
    if (!c.expiry) {
      return Error(Status::Unauthenticated(
          "the exec credential plugin printed an unparsable expirationTimestamp \"" + ts +
          "\" (want RFC 3339, e.g. 2026-01-02T15:04:05Z)"));
    }
  }
  return c;
}

namespace {

// The plugin runs waiting now (eventfd -> process group, 0 before it
// started), for InterruptExecPlugins().
std::mutex& PluginWaitersMu() {
  static std::mutex mu;
  return mu;
}
std::map<int, pid_t>& PluginWaiters() {
  static std::map<int, pid_t> waiters;
  return waiters;
}
// Set by InterruptExecPlugins(), under PluginWaitersMu(): the process is
// shutting down and starts no plugin any more.
bool g_plugins_interrupted = false;

// Registers one plugin run with InterruptExecPlugins() until Done() or
// destruction.
class PluginInterrupt {
 public:
  PluginInterrupt() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (fd_ < 0) return;
    std::lock_guard<std::mutex> lock(PluginWaitersMu());
    PluginWaiters()[fd_] = 0;
    if (g_plugins_interrupted) {
      uint64_t one = 1;
      ssize_t ignored = write(fd_, &one, sizeof one);
      (void)ignored;
    }
  }
  ~PluginInterrupt() {
    Done();
    if (fd_ >= 0) close(fd_);
  }
  PluginInterrupt(const PluginInterrupt&) = delete;
  PluginInterrupt& operator=(const PluginInterrupt&) = delete;
  int fd() const { return fd_; }
  // The plugin's process group, once it runs.
  void SetGroup(pid_t pgid) {
    if (fd_ < 0) return;
    std::lock_guard<std::mutex> lock(PluginWaitersMu());
    PluginWaiters()[fd_] = pgid;
  }
  // Before the plugin is reaped: its group id may be reused afterwards.
  void Done() {
    if (fd_ < 0) return;
    std::lock_guard<std::mutex> lock(PluginWaitersMu());
    PluginWaiters().erase(fd_);
  }

 private:
  int fd_;
};

}  // namespace

void InterruptExecPlugins() {
  std::lock_guard<std::mutex> lock(PluginWaitersMu());
  g_plugins_interrupted = true;
  for (const auto& [fd, pgid] : PluginWaiters()) {
    // Killed here too, so that a process about to _exit leaves none behind.
    if (pgid > 0) killpg(pgid, SIGKILL);
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof one);
    (void)ignored;
  }
}

CredentialSource::CredentialSource(UserConfig user, ClusterConfig cluster, ExecPluginLimits limits)
    : user_(std::move(user)), cluster_(std::move(cluster)), limits_(limits) {}

int CredentialSource::exec_runs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exec_runs_;
}

Result<Credentials> CredentialSource::Get(bool refresh) {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::system_clock::now();
  if (user_.exec) {
    // Cached until expiry (with a little slack so a token does not expire in
    // flight), or until the server said 401.
    if (cached_ && !refresh &&
        (!cached_->expiry || *cached_->expiry - std::chrono::seconds(10) > now)) {
      return *cached_;
    }
    auto creds = RunExecPlugin();
    if (!creds) return creds;
    // Static client certificates in the kubeconfig combine with an exec token.
    if (creds->client_cert_pem.empty()) {
      creds->client_cert_pem = user_.client_cert_pem;
      creds->client_key_pem = user_.client_key_pem;
    }
    cached_ = *creds;
    return *creds;
  }
  Credentials c;
  c.client_cert_pem = user_.client_cert_pem;
  c.client_key_pem = user_.client_key_pem;
  c.username = user_.username;
  c.password = user_.password;
  c.token = user_.token;
  if (c.token.empty() && !user_.token_file.empty()) {
    // Projected service-account tokens rotate; re-read at most once a minute
    // (client-go does the same).
    auto steady = std::chrono::steady_clock::now();
    if (cached_ && !refresh && steady - token_file_read_at_ < std::chrono::minutes(1)) {
      return *cached_;
    }
    auto token = ReadFile(user_.token_file, "tokenFile of user \"" + user_.name + "\"");
    if (!token) return Error(token.error());
    c.token = std::string(TrimRight(*token));
    token_file_read_at_ = steady;
    cached_ = c;
  }
  return c;
}

Result<Credentials> CredentialSource::RunExecPlugin() {
  const ExecConfig& x = *user_.exec;
  ++exec_runs_;
  Json info = {{"apiVersion", x.api_version},
               {"kind", "ExecCredential"},
               {"spec", {{"interactive", false}}}};
  if (x.provide_cluster_info) {
    Json cluster = {{"server", cluster_.server},
                    {"insecure-skip-tls-verify", cluster_.insecure_skip_tls_verify}};
    if (!cluster_.tls_server_name.empty()) cluster["tls-server-name"] = cluster_.tls_server_name;
    if (!cluster_.ca_pem.empty()) {
      cluster["certificate-authority-data"] = Base64Encode(cluster_.ca_pem);
    }
    info["spec"]["cluster"] = cluster;
  }

  // The environment: ours, then the kubeconfig's env (overriding), then
  // KUBERNETES_EXEC_INFO.
  SpawnOptions spawn;
  // Searched on $PATH when the command has no '/'; never a shell.
  spawn.program = x.command;
  spawn.search_path = true;
  spawn.argv = {x.command};
  spawn.argv.insert(spawn.argv.end(), x.args.begin(), x.args.end());
  spawn.env = CurrentEnvironment();
  for (const auto& [k, v] : x.env) (*spawn.env)[k] = v;
  (*spawn.env)["KUBERNETES_EXEC_INFO"] = info.dump();
  spawn.dev_null = {{STDIN_FILENO, O_RDONLY}};
  // Its own process group, so that a deadline stops whatever it started;
  // default signal handling and mask, whatever this thread blocks.
  spawn.group = SpawnOptions::Group::kNewGroup;
  spawn.clear_signal_mask = true;
  spawn.default_signals = {SIGPIPE, SIGTERM, SIGINT};

  PluginInterrupt interrupt;
  {
    // A process that is shutting down starts no plugin (cached credentials
    // still work).
    pollfd stopped{interrupt.fd(), POLLIN, 0};
    if (poll(&stopped, 1, 0) == 1) {
      return Error(Status::Cancelled("exec credential plugin \"" + x.command + "\" of user \"" + user_.name +
                                     "\" was not started: sluice is shutting down"));
    }
  }
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    return Error(Status::Internal(std::string("pipe: ") + std::strerror(errno)));
  }
  spawn.dup = {{STDOUT_FILENO, out_pipe[1]}};
  pid_t pid = 0;
  int rc = SpawnProcess(spawn, &pid);
  close(out_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    std::string msg = "exec credential plugin \"" + x.command + "\" of user \"" + user_.name +
                      "\" could not be started: " + std::strerror(rc);
    if (!x.install_hint.empty()) msg += "\n" + x.install_hint;
    return Error(rc == ENOENT ? Status::NotFound(msg) : Status::Unauthenticated(msg));
  }
  interrupt.SetGroup(pid);
  const std::string who = "exec credential plugin \"" + x.command + "\" of user \"" + user_.name + "\"";
  fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  // The plugin's exit is seen through a pidfd; its stdout is read until it
  // exits (a child it left running may hold the pipe open: what it has
  // written by then is read, and no more is waited for).
  int pidfd = PidfdOpen(pid);
  const auto deadline = std::chrono::steady_clock::now() + limits_.timeout;
  std::string out;
  Status failure;
  bool exited = false, eof = false;
  auto drain = [&] {
    char buf[65536];
    for (;;) {
      ssize_t n = read(out_pipe[0], buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > limits_.max_output) return;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) eof = true;
      return;
    }
  };
  while (failure.ok() && !exited) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      failure = Status::DeadlineExceeded(
          who + " did not finish within " +
          (limits_.timeout.count() % 1000 == 0 ? std::to_string(limits_.timeout.count() / 1000) + "s"
                                                : std::to_string(limits_.timeout.count()) + "ms") +
          "; it was stopped (its process group got SIGKILL)");
      break;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd fds[3] = {{out_pipe[0], static_cast<short>(eof ? 0 : POLLIN), 0},
                     {pidfd, POLLIN, 0},
                     {interrupt.fd(), POLLIN, 0}};
    // Without a pidfd (an old kernel) the exit is polled for, every 10 ms.
    int timeout_ms = static_cast<int>(std::min<int64_t>(left, pidfd < 0 ? 10 : 1 << 30));
    int n = poll(fds, 3, timeout_ms);
    if (n < 0 && errno != EINTR) {
      failure = Status::Internal(std::string("poll: ") + std::strerror(errno));
      break;
    }
    if (fds[2].revents) {
      failure = Status::Cancelled(who + " was stopped: sluice is shutting down");
      break;
    }
    if (!eof && fds[0].revents) drain();
    if (out.size() > limits_.max_output) {
      failure = Status::Unauthenticated(who + " printed more than " + std::to_string(limits_.max_output) +
                                        " bytes; it was stopped (an ExecCredential is a small JSON document)");
      break;
    }
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
      exited = true;
  }
  int wstatus = 0;
  if (!failure.ok()) killpg(pid, SIGKILL);  // the group id stays ours until the leader is reaped
  interrupt.Done();
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (failure.ok() && !eof) drain();  // what it wrote before it exited
  if (pidfd >= 0) close(pidfd);
  close(out_pipe[0]);
  if (failure.ok() && out.size() > limits_.max_output)
    failure = Status::Unauthenticated(who + " printed more than " + std::to_string(limits_.max_output) +
                                      " bytes (an ExecCredential is a small JSON document)");
  if (!failure.ok()) return Error(failure);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    std::string how = WIFEXITED(wstatus) ? "exited with code " + std::to_string(WEXITSTATUS(wstatus))
                                         : "was killed by signal " + std::to_string(WTERMSIG(wstatus));
    return Error(Status::Unauthenticated("exec credential plugin \"" + x.command + "\" of user \"" +
                                         user_.name + "\" " + how + " (its stderr is above)"));
  }
  auto creds = ParseExecCredential(out, x.api_version);
  if (!creds) {
    return Error(creds.error().WithContext("user \"" + user_.name + "\" (" + x.command + ")"));
  }
  return creds;
}

}  // namespace sluice::k8s
