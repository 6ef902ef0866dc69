#pragma once
// Server: `sluice serve`. Loads the pipelines under a directory, schedules
// them, runs them (RunManager), and serves the REST API (engine/server/
// openapi.h), webhooks, Prometheus metrics and the web UI over HTTP
// (cpp-httplib). See docs/server.md.

#include <atomic>
#include <functional>
#include <condition_variable>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/clock.h"
#include "engine/run/runner.h"
#include "engine/server/config.h"
#include "engine/server/oidc.h"
#include "engine/server/metrics.h"
#include "engine/server/pipeline_registry.h"
#include "engine/server/run_manager.h"
#include "engine/server/scheduler.h"
#include "engine/server/webhook.h"
#include "engine/store.h"
#include "engine/store/artifact_stores.h"
#include "engine/server/leader.h"

namespace sluice::server {

class HttpServer;

struct ServerOptions {
  std::string pipelines_dir = ".";   // searched recursively for pipeline files
  std::string state_dir = ".sluice"; // the store root shared with the CLI (its files)
  // The store of records when it is not the SQLite file in state_dir: a
  // postgres:// URL (--store); "" = the config's `store:`, else state_dir.
  std::string store;
  std::string listen;  // host:port (port 0 picks a free one); "" = the config's, else 127.0.0.1:8080
  std::string config_path;           // "" = no config: no tokens, every API call is 401
  std::string executor;              // default executor override ("" = the pipeline's)
  // Artifact store for every run (--artifacts "s3://bucket/prefix"); "" =
  // the pipeline's `artifacts:`, else the config's, else the local store.
  std::string artifacts;
  std::string artifacts_endpoint;    // --artifacts-endpoint; "" = the AWS settings'
  int max_concurrent_runs = 0;       // 0 = the config's (default 4)
  int run_parallelism = 0;           // steps at once per run; 0 = number of CPUs
  bool run_scheduler = true;         // false: nothing calls Tick() (tests drive it)
  bool watch = true;                 // mtime scan every reloadInterval
  bool resume_interrupted = true;    // resume runs whose process died, at Start()
  // Replicas sharing a PostgreSQL store (--leader-election): only the one
  // whose session holds the store's leader lock (PgLeaderLock) resumes
  // interrupted runs and fires schedules; the others serve the API and ask
  // for the lock every leader_retry, taking over (and resuming what the
  // leader drove) once it is free. Needs a postgres:// store.
  bool leader_election = false;
  Duration leader_retry{2000};
  // Another way to elect the leader (a Kubernetes Lease, built by the CLI):
  // when set it is used instead of the store's lock, whatever
  // leader_election says. The server calls it every leader_retry on a
  // thread of its own and releases it after a clean Stop().
  std::shared_ptr<LeaderElector> elector;
  // With an elector: a standby does not act on writes (POST/DELETE under
  // /api/v1 and the webhooks; not POST /api/v1/reload, which is local): it
  // forwards them to the leader's published URL, or answers 503 naming the
  // leader when it has none, so that only the leader starts and drives runs.
  bool standby_refuses_writes = false;
  // The host other replicas reach this one at (the pod's IP); "" = the
  // listen host (127.0.0.1 for 0.0.0.0). With an elector that publishes it
  // (the Lease), a standby forwards writes to http://LEADER_HOST:PORT
  // instead of refusing them; a forwarded write is never forwarded again.
  std::string advertise_host;
  // Called (on the leader thread) when this replica led and no longer does;
  // null = it only stops scheduling. `sluice serve --leader-election
  // kubernetes` exits there, as client-go's users do, so that no run is
  // driven by two replicas.
  std::function<void()> on_leadership_lost;
  // Programs of the built-in deploy / traffic-validation operators, by step
  // type (RunOptions::operator_commands); `sluice serve` finds sluice-serving
  // as `sluice run` does. Empty: such steps cannot run.
  std::map<std::string, std::vector<std::string>> operator_commands;
  // Prepares each run as `sluice run` does (RunManagerOptions::prepare);
  // empty = as loaded.
  RunPreparer prepare_run;
};

// How long, and how many, webhook deliveries are remembered to refuse a
// second one (DeliveryLog): a week covers GitHub's redelivery of the last
// three days; the cap bounds the memory and the file (about 60 bytes each).
inline constexpr Duration kDeliveryWindow = std::chrono::hours(24 * 7);
inline constexpr size_t kDeliveryCapacity = 50000;

class Server {
 public:
  // `executors` makes each run's executors (see ExecutorsFactory in
  // run_manager.h); borrows `clock` (null = the system clock); `factory`
  // null = RunnerFactory (the real Runner) over `executors`.
  Server(ServerOptions options, ExecutorsFactory executors, Clock* clock = nullptr,
         RunFactory factory = nullptr);
  ~Server();  // Stop()

  // Opens the store, reads the config, loads the pipelines, binds the port
  // and starts serving, the scheduler and the watcher in background threads.
  // Returns once the socket accepts connections. Errors: the config's
  // (kInvalidArgument / kNotFound), the store's, kUnavailable when the
  // address cannot be bound.
  Status Start();

  // Stops serving, cancels and waits for runs. Idempotent.
  void Stop();

  // Blocks until Stop() is called from another thread (or a signal handler
  // thread).
  void Wait();

  int port() const { return port_; }
  std::string url() const;  // "http://host:port"

  // For tests and the CLI wiring.
  PipelineRegistry* registry() { return registry_.get(); }
  RunManager* runs() { return runs_.get(); }
  Scheduler* scheduler() { return scheduler_.get(); }
  Store* store() { return store_.get(); }
  const ServerMetrics& metrics() const { return *metrics_; }
  std::string MetricsText() const { return metrics_registry_.Render(); }

  // Reloads the pipelines now and updates the schedules. Returns the
  // report as JSON (the POST /api/v1/reload body).
  Json Reload(bool force);

 private:
  void InstallRoutes();
  void SchedulerLoop();
  void WatchLoop();
  void SyncSchedules();
  // Whether this replica leads (always, without an elector): asks the
  // elector, says so on stderr when that changes, and resumes interrupted
  // runs on becoming the leader. Start(), then the leader thread only.
  bool Leads();
  // The leader thread: Leads() every leader_retry until Stop().
  void LeaderLoop();
  // GET /readyz's answer: "" when ready, else why not.
  std::string NotReadyReason();

  ServerOptions options_;
  ExecutorsFactory executors_;
  Clock* clock_;
  std::unique_ptr<Clock> own_clock_;
  RunFactory factory_;
  ServerConfig config_;
  std::unique_ptr<TokenAuthenticator> auth_;
  std::unique_ptr<OidcVerifier> oidc_;  // with the config's oidc:
  MetricsRegistry metrics_registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ArtifactStores> artifacts_;  // by URL: pipelines may name their own bucket
  std::unique_ptr<PipelineRegistry> registry_;
  std::unique_ptr<RunManager> runs_;
  std::unique_ptr<Scheduler> scheduler_;
  std::shared_ptr<LeaderElector> leader_;  // with leader election
  std::optional<bool> leading_;            // the last answer of Leads(); leader thread
  std::atomic<int> leading_state_{-1};     // leading_ for other threads: -1 unknown, 0, 1
  // Webhook deliveries already handled, kept kDeliveryWindow (at most
  // kDeliveryCapacity of them) in <state>/server/webhook-deliveries.log.
  std::unique_ptr<DeliveryLog> deliveries_;
  std::unique_ptr<HttpServer> http_;
  std::mutex reload_mu_;
  std::mutex spec_cache_mu_;
  std::map<std::string, SpecPtr> spec_cache_;  // by pipeline digest, for run graphs
  std::thread http_thread_, scheduler_thread_, watch_thread_, leader_thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;
  bool started_ = false;
  int port_ = 0;
  std::string host_;

  friend class Routes;
};

// `sluice serve`: runs a Server until SIGTERM or SIGINT, logging to stderr.
// Returns the process exit code: 0 after a clean stop, 2 for a bad
// config/flag, 1 for other start failures. `executors` makes each run's
// executors, as for Server.
int Serve(const ServerOptions& options, ExecutorsFactory executors);

}  // namespace sluice::server
