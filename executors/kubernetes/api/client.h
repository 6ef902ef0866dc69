#pragma once
// A small Kubernetes REST client: typed-enough CRUD on JSON objects, and
// watches that survive dropped streams and expired resource versions.
//
// Built on cpp-httplib + OpenSSL (no kubectl). TLS is verified against the
// kubeconfig's CA unless the kubeconfig says insecure-skip-tls-verify.
//
// Every request goes through:
//   - a token-bucket rate limiter (ClientOptions::qps/burst, default 50/100);
//   - retries of 429, 5xx and connection failures with exponential backoff
//     (200 ms doubling to 10 s, 5 retries) that honours Retry-After;
//   - one credential refresh on 401 (exec plugins, rotated token files);
//   - error mapping to Status with the API server's own message kept:
//       kUnavailable        "cannot reach https://h:p: connection refused (is the
//                            cluster up? context X)", or 5xx/429 after retries
//       kUnauthenticated    "unauthorized: check the credentials of user U in
//                            context C (kubeconfig F)"
//       kPermissionDenied   "forbidden: <apiserver message> (user U, context C)"
//       kNotFound, kAlreadyExists, kInvalidArgument (422), kFailedPrecondition (409 conflict, 410)
//
// Thread-safety: a Client may be used from any number of threads at once
// (requests run on a small pool of connections). A Watcher runs on its own
// thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/status.h"
#include "executors/kubernetes/api/kubeconfig.h"
#include "executors/kubernetes/api/rate_limiter.h"

namespace sluice::k8s {

using Json = nlohmann::json;
using Duration = std::chrono::milliseconds;

// Where a kind of object lives in the REST API.
struct ResourceKind {
  std::string api_version;  // "v1", "batch/v1", "kubeflow.org/v1"
  std::string kind;         // "Job"
  std::string plural;       // "jobs"
  bool namespaced = true;

  // "jobs.batch", "pods" (as the API server names it in messages and RBAC).
  std::string GroupResource() const;
  // "/apis/batch/v1/namespaces/NS/jobs" ("/api/v1/..." for the core group).
  std::string CollectionPath(const std::string& ns) const;
};

// Kinds sluice uses.
const ResourceKind& PodKind();
const ResourceKind& JobKind();
const ResourceKind& TFJobKind();
const ResourceKind& PyTorchJobKind();
const ResourceKind& PersistentVolumeClaimKind();

// What happens to an object's dependents (a Job's pods) when it is deleted.
enum class Propagation { kBackground, kForeground, kOrphan };

// How a request shares the client's rate limit: kNormal requests queue in
// order; kBackground ones (log copies of finished steps) wait until the
// limiter is idle, so they never delay a create (TokenBucket::ReserveIdle).
enum class Priority { kNormal, kBackground };

struct ClientOptions {
  double qps = 50;   // sustained requests per second (client-go default: 5)
  int burst = 100;   // requests allowed at once after a quiet period (client-go: 10)
  int max_retries = 5;
  Duration initial_backoff{200};
  Duration max_backoff{10000};
  Duration max_retry_after{60000};  // a longer Retry-After is capped to this
  // Bounds the TCP connect and, for https, the TLS handshake. A server that
  // accepts the connection and then says nothing within it is not retried:
  // the request fails after this long (plus nothing).
  Duration connect_timeout{10000};
  Duration request_timeout{30000};
  ExecPluginLimits exec_plugin;  // deadline and output cap of users[].user.exec
  int watch_timeout_seconds = 300;  // server closes a watch after this; we resume
  std::string user_agent = "sluice/" SLUICE_VERSION;
};

// One event of a watch stream.
struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kAdded;
  Json object;  // the object; for kError a metav1.Status
};

// Parses one line of a watch stream ({"type": ..., "object": ...}).
// kInvalidArgument on malformed JSON or an unknown type.
Result<WatchEvent> ParseWatchEvent(std::string_view line);

// Cuts a byte stream into newline-terminated lines (a watch response arrives
// in arbitrary chunks). Not thread-safe.
class LineSplitter {
 public:
  // Appends `data` and calls `on_line` (without the '\n') for each complete
  // line; stops early and returns false when `on_line` returns false.
  bool Feed(std::string_view data, const std::function<bool(std::string_view)>& on_line);
  // Bytes of an incomplete last line.
  size_t pending() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

// The items of a list and the resourceVersion to watch from.
struct ObjectList {
  std::vector<Json> items;
  std::string resource_version;
};

// Response of one HTTP exchange (after retries), for callers that need more
// than a Status.
struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

class Watcher;

// Callbacks of a watch, run on the watcher's thread.
struct WatchHandlers {
  // Each ADDED/MODIFIED/DELETED event. After a (re)list, every listed object
  // is delivered as kAdded first.
  std::function<void(const WatchEvent&)> on_event;
  // After each successful (re)list, before its watch starts.
  std::function<void()> on_synced;
  // A persistent failure (e.g. forbidden); the watcher keeps retrying.
  std::function<void(const Status&)> on_error;
};

class Client {
 public:
  // Validates the server URL and TLS material (CA, client certificate).
  // kInvalidArgument for a bad server URL or unparsable PEM.
  static Result<std::unique_ptr<Client>> Create(const RestConfig& config,
                                                ClientOptions options = {});
  ~Client();

  Result<Json> Get(const ResourceKind& kind, const std::string& ns, const std::string& name);
  // All pages of a list. `label_selector` may be "".
  Result<ObjectList> List(const ResourceKind& kind, const std::string& ns,
                          const std::string& label_selector,
                          Priority priority = Priority::kNormal);
  // POST; returns the created object. kAlreadyExists when the name is taken.
  Result<Json> Create(const ResourceKind& kind, const std::string& ns, const Json& object);
  // JSON merge patch (RFC 7386); returns the patched object.
  Result<Json> MergePatch(const ResourceKind& kind, const std::string& ns,
                          const std::string& name, const Json& patch);
  // DELETE with a propagation policy; OK when the object is already gone.
  Status Delete(const ResourceKind& kind, const std::string& ns, const std::string& name,
                Propagation propagation, std::optional<int64_t> grace_seconds = std::nullopt);
  // Deletes every object matching `label_selector` in `ns`.
  Status DeleteCollection(const ResourceKind& kind, const std::string& ns,
                          const std::string& label_selector, Propagation propagation);
  // GET of a text resource, e.g. a pod's log
  // ("/api/v1/namespaces/ns/pods/p/log?container=main"). `max_retries` < 0
  // uses ClientOptions::max_retries.
  Result<std::string> GetText(const std::string& path_and_query, int max_retries = -1,
                              Priority priority = Priority::kNormal);

  // Starts a list+watch of `kind` objects in `ns` matching `label_selector`
  // on a new thread: it lists, delivers the items, then watches from the
  // list's resourceVersion with bookmarks; it resumes dropped streams from the
  // last seen resourceVersion and lists again on 410 Gone. Runs until the
  // returned Watcher is stopped or destroyed. The Client must outlive it.
  std::unique_ptr<Watcher> Watch(const ResourceKind& kind, const std::string& ns,
                                 const std::string& label_selector, WatchHandlers handlers);

  // Sends one request with limiting, retries and error mapping; `ok_codes`
  // are the HTTP statuses returned as success. Exposed for tests and rare
  // calls. `what` describes the request in errors ("create jobs.batch x").
  Result<HttpResponse> Do(const std::string& method, const std::string& path_and_query,
                          const std::string& body, const std::string& content_type,
                          const std::string& what, int max_retries = -1,
                          Priority priority = Priority::kNormal);

  const RestConfig& config() const { return config_; }
  const ClientOptions& options() const { return options_; }
  // Requests sent, by HTTP method (retries included), plus RETRY (transport
  // errors), RETRY_<status> (429/5xx) and STALE_CONN (a pooled connection
  // the server had closed); for benchmarks.
  std::map<std::string, int64_t> RequestCounts() const;

  // Implementation detail shared with Watcher.
  struct Conn;

 private:
  friend class Watcher;
  Client(RestConfig config, ClientOptions options);

  Result<std::unique_ptr<Conn>> NewConn(Duration read_timeout);
  // A pooled connection (*reused = true) or a new one; nullptr on error.
  std::unique_ptr<Conn> AcquireConn(bool* reused);
  void ReleaseConn(std::unique_ptr<Conn> conn);
  // Adds Authorization and the user agent; refreshes credentials when asked.
  Result<std::map<std::string, std::string>> Headers(bool refresh);
  std::string Describe() const;  // "context X, user Y"
  Status ConnectionError(const std::string& detail) const;
  Status HttpError(const HttpResponse& r, const std::string& what) const;
  Duration Backoff(int attempt, const HttpResponse* r) const;
  void Count(const std::string& method);

  const RestConfig config_;
  const ClientOptions options_;
  std::string scheme_, host_;
  int port_ = 0;
  CredentialSource creds_;
  TokenBucket limiter_;
  std::atomic<uint64_t> creds_generation_{0};
  std::string last_client_cert_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Conn>> pool_;
  std::map<std::string, int64_t> counts_;
};

// A running list+watch (see Client::Watch). Stop() (or the destructor)
// interrupts the stream and joins the thread; no callback runs after it.
class Watcher {
 public:
  Watcher(Client* client, ResourceKind kind, std::string ns, std::string label_selector,
          WatchHandlers handlers);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void Stop();
  // Times the watcher listed (1 + relists after 410 Gone); for tests.
  int lists() const { return lists_.load(); }
  // Times a watch stream was opened; for tests.
  int streams() const { return streams_.load(); }

 private:
  void Run();
  // Streams one watch; returns the status (410 → relist).
  enum class StreamEnd { kStopped, kClosed, kGone, kFailed };
  StreamEnd Stream(std::string* resource_version);

  Client* client_;
  const ResourceKind kind_;
  const std::string ns_, selector_;
  WatchHandlers handlers_;
  std::atomic<bool> stop_{false};
  std::atomic<int> lists_{0}, streams_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  Client::Conn* active_ = nullptr;  // guarded by mu_, for Stop()
  bool finished_ = false;            // guarded by mu_: Run() has returned
  std::thread thread_;
};

}  // namespace sluice::k8s
