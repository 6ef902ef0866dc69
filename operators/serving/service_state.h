#pragma once
// What a locally deployed service looks like between steps and runs:
// `<state_dir>/services/<service>.json`, plus a lock file and a directory
// `<state_dir>/services/<service>/` for the proxy's admin token and the logs
// of the proxy and of each model server.
//
//   {
//     "service": "breast-cancer",
//     "proxy": {"pid", "start_time", "bind", "port", "admin_port",
//               "token_file", "log"},
//     "stable":    <backend> | null,   // serves (100 - candidate's share) %
//     "candidate": <backend> | null    // a canary under validation
//   }
//   <backend> = {"name", "version", "model", "model_digest", "url", "port",
//                "pid", "start_time", "command", "log", "traffic_percent",
//                "deployed_at", "run_id"}
//
// Writes are atomic (temporary file + rename). Every change to a service
// holds its lock (flock on `<service>.lock`), so two steps never interleave
// their changes to the same service.

#include <optional>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "operators/serving/canary_proxy.h"
#include "operators/serving/process.h"

namespace sluice::serving {

struct BackendState {
  std::string name;     // "<service>@<version>", the proxy's backend name
  std::string version;
  std::string model;         // path of the model artifact it loaded
  std::string model_digest;  // "sha256:..."
  std::string url;           // "http://127.0.0.1:<port>"
  int port = 0;
  ProcessId process;
  std::vector<std::string> command;  // argv after substitution
  std::string log;
  double traffic_percent = 0;
  std::string deployed_at;  // RFC 3339 UTC
  std::string run_id;
};

struct ProxyState {
  ProcessId process;
  std::string bind = "127.0.0.1";
  int port = 0;
  int admin_port = 0;
  std::string token_file;
  std::string log;

  // "http://<host>:<port>" clients use (127.0.0.1 when bound to 0.0.0.0).
  std::string Endpoint() const;
};

struct ServiceState {
  std::string service;
  std::optional<ProxyState> proxy;
  std::optional<BackendState> stable;
  std::optional<BackendState> candidate;
};

Json ToJson(const BackendState& backend);
Json ToJson(const ServiceState& state);

// kInvalidArgument unless `name` is a DNS-1123 label (a-z, 0-9, '-', at most
// 63 characters, starting and ending alphanumeric): service names become
// Kubernetes object names and file names.
Status ValidateServiceName(const std::string& name);

// `<state_dir>/services`, `<state_dir>/services/<service>` (created when
// `create`), and the state file's path.
std::string ServicesDir(const std::string& state_dir);
Result<std::string> ServiceDir(const std::string& state_dir, const std::string& service,
                               bool create);
std::string ServiceStatePath(const std::string& state_dir, const std::string& service);

// Reads a service's state; nullopt when it was never deployed. kInternal for
// an unreadable or malformed file (with the path).
Result<std::optional<ServiceState>> LoadServiceState(const std::string& state_dir,
                                                     const std::string& service);

// Writes it atomically, creating the directories.
Status SaveServiceState(const std::string& state_dir, const ServiceState& state);

// Exclusive lock on one service, released on destruction.
class ServiceLock {
 public:
  // Waits up to `timeout` for the lock. kDeadlineExceeded names the holder's
  // purpose when another deploy/validation holds it.
  static Result<ServiceLock> Acquire(const std::string& state_dir, const std::string& service,
                                     Duration timeout);
  ServiceLock(ServiceLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  ServiceLock& operator=(ServiceLock&&) = delete;
  ~ServiceLock();

 private:
  explicit ServiceLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// A client of a running proxy's admin API.
class ProxyAdmin {
 public:
  // Reads the token from `proxy.token_file`. Errors as ReadTokenFile.
  static Result<ProxyAdmin> ForProxy(const ProxyState& proxy);

  // PUT /backends. kUnavailable when the proxy cannot be reached.
  Status SetBackends(const std::vector<ProxyBackend>& backends) const;
  // GET /stats.
  Result<Json> Stats() const;
  // GET /healthz answers 200.
  bool Healthy() const;

 private:
  std::string base_;
  std::string token_;
};

// Current UTC time as RFC 3339 ("2026-11-25T16:03:12Z").
std::string NowRfc3339();

}  // namespace sluice::serving
