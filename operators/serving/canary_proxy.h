#pragma once
// The local canary proxy: one per service, on a stable port, splitting
// requests between model-server backends by weight.
//
// Routing: smooth weighted round-robin (weighted_picker.h), so shares are
// exact over every cycle of sum(weights) requests. Each request is forwarded
// with its method, target (path and query), headers (minus hop-by-hop ones)
// and body; the upstream's status, headers and body come back unchanged, plus
// `X-Sluice-Backend: <name>`. When the upstream cannot be reached or does not
// answer in time, the client gets 502 with a JSON body
//   {"error": "upstream <name> (<url>) failed: <reason>", "backend": "<name>"}
// and with no backends (or all weights 0) it gets 503.
//
// Admin API, on a separate listener (127.0.0.1 by default), every request but
// GET /healthz needs `Authorization: Bearer <token>`:
//   GET  /healthz                 200 "ok"
//   GET  /stats                   {"service", "backends": [{name, url, weight,
//                                  requests, errors}], "requests", "errors"}
//   PUT  /backends                body {"backends": [{name, url, weight}]}:
//                                 replaces the whole set atomically; counters
//                                 of names kept in the set are kept
//   POST /stats/reset             zeroes the counters
//
// Thread-safety: all public methods may be called from any thread.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "operators/serving/weighted_picker.h"

namespace httplib {
class Server;
}

namespace sluice::serving {

struct ProxyBackend {
  std::string name;  // e.g. "breast-cancer@v3"
  std::string url;   // "http://127.0.0.1:40123"
  int64_t weight = 0;
};

struct CanaryProxyOptions {
  std::string service;               // for messages and /stats
  std::string bind = "127.0.0.1";    // public listener
  int port = 0;                      // 0 = any free port
  std::string admin_bind = "127.0.0.1";
  int admin_port = 0;                // 0 = any free port
  std::string token;                 // admin bearer token; must not be empty
  Duration upstream_timeout = std::chrono::seconds(30);
  int threads = 32;                  // worker threads (= concurrent client connections)
};

class CanaryProxy {
 public:
  // Binds both listeners and starts serving on background threads. Errors:
  // kInvalidArgument (empty token), kUnavailable (a port cannot be bound).
  static Result<std::unique_ptr<CanaryProxy>> Start(const CanaryProxyOptions& options);

  // Stops both listeners and joins their threads.
  ~CanaryProxy();
  CanaryProxy(const CanaryProxy&) = delete;
  CanaryProxy& operator=(const CanaryProxy&) = delete;

  int port() const { return port_; }
  int admin_port() const { return admin_port_; }

  // Replaces the backend set atomically. Errors: kInvalidArgument (empty or
  // duplicate name, URL not http://host:port, negative weight).
  Status SetBackends(const std::vector<ProxyBackend>& backends);

  // The /stats document.
  Json Stats() const;

  // Stops serving; Wait() then returns. Idempotent.
  void Stop();

  // Blocks until Stop() (or a failure of a listener).
  void Wait();

 private:
  struct Backend;
  struct Table;

  explicit CanaryProxy(CanaryProxyOptions options);
  void InstallRoutes();
  std::shared_ptr<Backend> PickBackend();

  CanaryProxyOptions options_;
  std::unique_ptr<httplib::Server> public_;
  std::unique_ptr<httplib::Server> admin_;
  std::thread public_thread_;
  std::thread admin_thread_;
  int port_ = 0;
  int admin_port_ = 0;

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Backend>> backends_;  // guarded by mu_
  WeightedPicker picker_;                            // guarded by mu_
  std::atomic<int64_t> unrouted_{0};                 // 503s: no backend
  std::atomic<bool> stopped_{false};
  std::atomic<bool> public_done_{false};  // the listen loop has returned
  std::atomic<bool> admin_done_{false};
};

// Reads an admin token file. The file must be owned by us and not readable by
// group or others (mode 0600 or stricter): kPermissionDenied otherwise,
// kNotFound when missing, kInvalidArgument when empty.
Result<std::string> ReadTokenFile(const std::string& path);

// Creates `path` with mode 0600 holding a fresh random token (64 hex
// characters from /dev/urandom); replaces an existing file.
Result<std::string> WriteNewTokenFile(const std::string& path);

// Splits "http://host:port" into host and port. kInvalidArgument otherwise.
Status ParseHttpUrl(const std::string& url, std::string* host, int* port);

}  // namespace sluice::serving
