#include "engine/server/server.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <charconv>
#include <atomic>
#include <memory>
#include <thread>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <date/date.h>
#include <httplib.h>

#include "dsl/dsl.h"
#include "engine/store/artifact_store.h"
#include "engine/graph.h"
#include "engine/store/lineage.h"
#include "engine/json_text.h"
#include "engine/server/api_json.h"
#include "engine/server/authz.h"
#include "engine/server/http_server.h"
#include "engine/server/oidc.h"
#include "engine/server/openapi.h"
#include "engine/server/ui_assets.h"
#include "engine/server/webhook.h"
#include "engine/server/retention.h"
#include "engine/store/open_store.h"
#include "engine/store/record_json.h"

namespace sluice::server {
namespace {

std::string Iso(TimePoint t) { return IsoTime(t); }
std::optional<TimePoint> ParseTime(const std::string& s) { return ParseIsoTime(s); }
Json ArtifactJson(const ArtifactRecord& a) { return ArtifactToJson(a); }
Json RunJson(const RunRecord& r) { return RunToJson(r); }
Json StepJson(const StepRecord& s) { return StepToJson(s); }

int HttpCode(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists: return 409;
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 504;
    case StatusCode::kCancelled: return 499;
    default: return 500;
  }
}

void SendJson(httplib::Response& res, int code, const Json& body) {
  res.status = code;
  // Pipeline files, diagnostics and logs are not always UTF-8: invalid bytes
  // become U+FFFD rather than an exception.
  res.set_content(JsonText(body), "application/json");
}

void SendError(httplib::Response& res, const Status& s) {
  SendJson(res, HttpCode(s.code()),
           {{"error", {{"code", std::string(StatusCodeName(s.code()))}, {"message", s.message()}}}});
}

void SendUnauthorized(httplib::Response& res, const std::string& message) {
  res.set_header("WWW-Authenticate", "Bearer realm=\"sluice\"");
  SendJson(res, 401, {{"error", {{"code", "UNAUTHENTICATED"}, {"message", message}}}});
}

std::pair<std::string, int> SplitListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return {listen, 8080};
  std::string host = listen.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  try {
    return {host, std::stoi(listen.substr(colon + 1))};
  } catch (...) {
    return {host, -1};
  }
}

bool Truthy(const std::string& v) { return v == "1" || v == "true" || v == "yes"; }

constexpr char kGithubWebhookPath[] = "/api/v1/webhooks/github";
constexpr char kGitlabWebhookPath[] = "/api/v1/webhooks/gitlab";

// The largest log offset a client may ask for (1 PiB): far beyond any log,
// and small enough that offset + bytes read cannot overflow.
constexpr int64_t kMaxLogOffset = int64_t{1} << 50;

// `?offset=` of the logs endpoint: decimal digits only, 0..kMaxLogOffset.
Result<int64_t> ParseLogOffset(const std::string& text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || text[0] == '-' || text[0] == '+' || ec != std::errc() ||
      end != text.data() + text.size() || v > kMaxLogOffset)
    return Error(Status::InvalidArgument("offset must be a byte offset from 0 to " +
                                         std::to_string(kMaxLogOffset) + ", not '" +
                                         text.substr(0, 40) + "'"));
  return v;
}

// An embedded web UI file, or a plain 404.
void ServeUiAsset(const std::string& path, httplib::Response& res) {
  const EmbeddedAsset* a = FindUiAsset(path);
  if (!a) {
    res.status = 404;
    res.set_content("not found\n", "text/plain");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_content(std::string(a->data), std::string(a->content_type).c_str());
}

// What the pre-routing hook learned about the request being answered on this
// thread, for the handler and the post-routing hook: HttpServer serves a
// connection's requests one at a time on one thread, and httplib gives a
// request no slot of its own for such data. Reset at each request.
struct RequestContext {
  std::optional<RouteMatch> route;   // nullopt: no rule (UI files, unknown paths)
  std::optional<Identity> identity;  // who, for routes that need one
  std::string run_id;    // the run the path names, resolved to its full id
  std::string pipeline;  // the pipeline the path names, or the run's
  std::string forward_to;  // the leader's URL, for a write this standby forwards
  bool forwarded = false;  // a write this standby forwarded to the leader
};

// On a write a standby forwarded to the leader: the standby's identity. The
// answer it relays carries the leader's in X-Sluice-Leader.
constexpr char kForwardedHeader[] = "X-Sluice-Forwarded-By";
thread_local RequestContext t_request;

// `?limit=` clamped to [1, max], or `fallback` when absent.
int LimitParam(const httplib::Request& req, int fallback, int max) {
  return req.has_param("limit") ? std::clamp(std::atoi(req.get_param_value("limit").c_str()), 1, max)
                                : fallback;
}

// `?since=` (an RFC 3339 time or a date) into `*since`; absent or empty
// leaves it unset. Errors: kInvalidArgument.
Status SinceParam(const httplib::Request& req, std::optional<TimePoint>* since) {
  if (!req.has_param("since") || req.get_param_value("since").empty()) return Status::Ok();
  auto t = ParseTime(req.get_param_value("since"));
  if (!t) return Status::InvalidArgument("since must be an RFC 3339 time or a date");
  *since = t;
  return Status::Ok();
}

// Whether the caller of the request on this thread may see `pipeline`'s
// runs: always, unless its identity is scoped to other pipelines.
bool CallerMaySee(const std::string& pipeline) {
  return !t_request.identity || t_request.identity->MayAccessPipeline(pipeline);
}

}  // namespace

Server::Server(ServerOptions options, ExecutorsFactory executors, Clock* clock, RunFactory factory)
    : options_(std::move(options)), executors_(std::move(executors)), clock_(clock), factory_(std::move(factory)) {
  if (clock_ == nullptr) {
    own_clock_ = std::make_unique<SystemClock>();
    clock_ = own_clock_.get();
  }
  metrics_ = std::make_unique<ServerMetrics>(&metrics_registry_);
}

Server::~Server() { Stop(); }

std::string Server::url() const {
  std::string host = host_ == "0.0.0.0" ? "127.0.0.1" : host_;
  return "http://" + host + ":" + std::to_string(port_);
}

Status Server::Start() {
  if (!options_.config_path.empty()) {
    auto config = LoadServerConfig(options_.config_path);
    if (!config) return config.error();
    config_ = std::move(*config);
  }
  auth_ = std::make_unique<TokenAuthenticator>(config_.tokens);
  if (config_.oidc) oidc_ = std::make_unique<OidcVerifier>(*config_.oidc, OidcVerifier::Options{});
  std::string listen = options_.listen.empty() ? config_.listen : options_.listen;
  if (listen.empty()) listen = "127.0.0.1:8080";
  auto [host, port] = SplitListen(listen);
  if (port < 0 || port > 65535)
    return Status::InvalidArgument("listen address '" + listen + "' is not host:port");
  host_ = host;

  std::string location = options_.store.empty() ? config_.store : options_.store;
  if (location.empty()) location = options_.state_dir;
  auto store = OpenStore(location);
  if (!store) return store.error().WithContext("opening the store " + MaskStoreUrl(location));
  if ((options_.leader_election || options_.elector) && !IsPostgresUrl(location))
    return Status::InvalidArgument("--leader-election needs a postgres:// store (--store, or store: in the config)");
  if (options_.elector) {
    leader_ = options_.elector;
  } else if (options_.leader_election) {
    auto lock = PgLeaderLock::Connect(location);
    if (!lock) return lock.error();
    leader_ = std::make_shared<PgLeaderElector>(std::move(*lock));
  }
  store_ = std::move(*store);
  artifacts_ = std::make_unique<ArtifactStores>(options_.state_dir, options_.artifacts_endpoint);
  // The server-wide store is checked now: a wrong endpoint or wrong
  // credentials stop the server from starting rather than fail every run.
  if (std::string url = options_.artifacts.empty() ? config_.artifacts : options_.artifacts; !url.empty()) {
    if (auto opened = artifacts_->Get(url); !opened) return opened.error();
  }
  registry_ = std::make_unique<PipelineRegistry>(options_.pipelines_dir);
  if (auto r = registry_->Reload(true); !r) return r.error();

  RunManagerOptions run_options;
  run_options.max_concurrent =
      options_.max_concurrent_runs > 0 ? options_.max_concurrent_runs : config_.max_concurrent_runs;
  run_options.state_dir = options_.state_dir;
  run_options.default_executor = options_.executor;
  run_options.parallelism = options_.run_parallelism;
  run_options.history_limit = config_.history_limit;
  run_options.operator_commands = options_.operator_commands;
  run_options.prepare = options_.prepare_run;
  ArtifactStoreFor artifacts_for = [this](const PipelineSpec& spec) {
    return artifacts_->Get(ChooseArtifactStore({{options_.artifacts, "--artifacts"},
                                                {spec.artifacts, "the pipeline's artifacts:"},
                                                {config_.artifacts, "the server config's artifacts:"}})
                               .url);
  };
  RunFactory factory = factory_ ? factory_ : RunnerFactory(store_.get(), artifacts_for, executors_);
  runs_ = std::make_unique<RunManager>(run_options, store_.get(), registry_.get(), factory,
                                       metrics_.get());
  // With a PostgreSQL store nothing has created the state directory yet.
  std::error_code mkdir_error;
  std::filesystem::create_directories(options_.state_dir + "/server", mkdir_error);
  deliveries_ = std::make_unique<DeliveryLog>(options_.state_dir + "/server/webhook-deliveries.log",
                                              kDeliveryWindow, kDeliveryCapacity);
  if (Status s = deliveries_->Open(clock_->Now()); !s.ok())
    std::fprintf(stderr, "sluice serve: warning: %s\n", s.message().c_str());
  scheduler_ = std::make_unique<Scheduler>(clock_, runs_.get(),
                                           options_.state_dir + "/server/schedules.json",
                                           metrics_.get());
  SyncSchedules();
  if (Status s = scheduler_->Open(); !s.ok()) return s;

  ServerMetrics* metrics = metrics_.get();
  http_ = std::make_unique<HttpServer>(config_.http, [metrics](const char* reason) {
    metrics->http_connections_refused->Inc({{"reason", reason}});
  });
  InstallRoutes();
  if (port == 0) {
    port_ = http_->bind_to_any_port(host_);
    if (port_ < 0) return Status::Unavailable("cannot bind " + host_ + " to any port");
  } else {
    if (!http_->bind_to_port(host_, port))
      return Status::Unavailable("cannot listen on " + listen +
                                 " (in use, or not an address of this host); pick another with "
                                 "--listen");
    port_ = port;
  }
  http_->RaiseBacklog();
  if (leader_) {
    std::string advertised = options_.advertise_host.empty() ? url()
                                                             : "http://" + options_.advertise_host + ":" + std::to_string(port_);
    leader_->Advertise(advertised);
  }
  Leads();  // without leader election: resumes interrupted runs now
  // httplib's stop() does nothing until the listen loop runs
  // (is_running()), so a Stop() right after Start() could miss it and leave
  // this thread listening forever (seen as a hung ApiTest). Start returns
  // once the loop runs, or has already returned.
  auto listen_returned = std::make_shared<std::atomic<bool>>(false);
  http_thread_ = std::thread([this, listen_returned] {
    http_->listen_after_bind();
    listen_returned->store(true);
  });
  while (!http_->is_running() && !listen_returned->load()) std::this_thread::yield();
  started_ = true;
  if (leader_) leader_thread_ = std::thread([this] { LeaderLoop(); });
  if (options_.run_scheduler) scheduler_thread_ = std::thread([this] { SchedulerLoop(); });
  if (options_.watch) watch_thread_ = std::thread([this] { WatchLoop(); });
  return Status::Ok();
}

void Server::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stop_cv_.notify_all();
  clock_->Wake();
  if (http_) http_->StopAndWait();
  if (http_thread_.joinable()) http_thread_.join();
  if (scheduler_thread_.joinable()) scheduler_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (leader_thread_.joinable()) leader_thread_.join();
  if (runs_) runs_->Shutdown();
  // After the runs ended: a standby takes over now, with nothing to adopt.
  if (leader_ && leading_state_.load() == 1) leader_->Release();
}

void Server::Wait() {
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait(lock, [&] { return stopped_; });
}

void Server::SyncSchedules() {
  std::set<std::string> wanted;
  for (const PipelineFile& f : registry_->List()) {
    if (!f.spec || !f.spec->schedule) continue;
    Status s = scheduler_->SetSchedule(f.spec->name, *f.spec->schedule);
    if (!s.ok())
      std::fprintf(stderr, "sluice serve: %s: schedule not applied: %s\n", f.path.c_str(),
                   s.message().c_str());
    else
      wanted.insert(f.spec->name);
  }
  for (const std::string& name : scheduler_->Pipelines())
    if (!wanted.count(name)) scheduler_->RemoveSchedule(name);
  int ok = 0, bad = 0;
  for (const PipelineFile& f : registry_->List()) (f.ok ? ok : bad)++;
  metrics_->pipelines_loaded->Set({{"status", "ok"}}, ok);
  metrics_->pipelines_loaded->Set({{"status", "error"}}, bad);
}

Json Server::Reload(bool force) {
  std::lock_guard lock(reload_mu_);
  auto report = registry_->Reload(force);
  if (!report) return {{"error", report.error().message()}};
  if (report->changed()) SyncSchedules();
  clock_->Wake();
  return {{"loaded", report->loaded}, {"failed", report->failed}, {"removed", report->removed}};
}

bool Server::Leads() {
  bool leads = true;
  if (leader_) {
    auto got = leader_->TryLead();
    if (!got) std::fprintf(stderr, "sluice serve: leader election: %s\n", got.error().message().c_str());
    leads = got && *got;
  }
  if (leading_ == leads) return leads;
  const bool lost = leading_.value_or(false) && !leads;
  leading_ = leads;
  leading_state_.store(leads ? 1 : 0);
  if (leader_) {
    std::string who = leader_->Identity().empty() ? "this replica" : "this replica (" + leader_->Identity() + ")";
    std::string other = leader_->Leader().empty() ? "another replica" : leader_->Leader();
    if (leads)
      std::fprintf(stderr, "sluice serve: leading: %s holds %s\n", who.c_str(), leader_->What().c_str());
    else
      std::fprintf(stderr, "sluice serve: standing by: %s holds %s\n", other.c_str(), leader_->What().c_str());
  }
  if (lost && options_.on_leadership_lost) options_.on_leadership_lost();
  if (leads && options_.resume_interrupted) {
    std::function<bool(const RunRecord&)> previous;
    if (leader_) previous = [this](const RunRecord& run) { return leader_->DrivenByPreviousLeader(run); };
    for (const std::string& id : runs_->ResumeInterrupted(previous))
      std::fprintf(stderr, "sluice serve: resuming interrupted run as %s\n", id.c_str());
  }
  clock_->Wake();  // the scheduler starts or stops now
  return leads;
}

void Server::LeaderLoop() {
  while (true) {
    {
      std::unique_lock lock(stop_mu_);
      if (stop_cv_.wait_for(lock, options_.leader_retry, [&] { return stopped_; })) return;
    }
    Leads();
  }
}

std::string Server::NotReadyReason() {
  if (leading_state_.load() < 0) return "the leader election has not answered yet";
  RunFilter filter;
  filter.limit = 1;
  if (auto runs = store_->ListRuns(filter); !runs) return "the store does not answer";
  return "";
}

void Server::SchedulerLoop() {
  while (true) {
    {
      std::lock_guard lock(stop_mu_);
      if (stopped_) return;
    }
    if (leading_state_.load() != 1) {
      clock_->SleepFor(options_.leader_retry);
      continue;
    }
    for (const ScheduleDecision& d : scheduler_->Tick())
      std::fprintf(stderr, "sluice serve: schedule %s %s: %s %s %s\n", d.pipeline.c_str(),
                   date::format("%FT%TZ", d.time).c_str(), d.action.c_str(), d.run_id.c_str(),
                   d.message.c_str());
    // Sleep until the next cron time, re-checking at least every 30s (a
    // reload or a clock jump wakes us too).
    Duration wait = std::chrono::seconds(30);
    if (auto next = scheduler_->NextWakeup()) {
      auto until = std::chrono::duration_cast<Duration>(*next - clock_->Now());
      wait = std::clamp(until, Duration(50), wait);
    }
    // A leader that lost the leadership stops within a retry period.
    if (leader_) wait = std::min(wait, options_.leader_retry);
    clock_->SleepFor(wait);
  }
}

void Server::WatchLoop() {
  while (true) {
    std::unique_lock lock(stop_mu_);
    if (stop_cv_.wait_for(lock, config_.reload_interval, [&] { return stopped_; })) return;
    lock.unlock();
    Json report = Reload(false);
    if (report.contains("loaded") && (!report["loaded"].empty() || !report["failed"].empty() ||
                                      !report["removed"].empty()))
      std::fprintf(stderr, "sluice serve: reloaded pipelines: %s\n", JsonText(report).c_str());
  }
}

// The HTTP handlers, with access to the Server's internals: one method per
// route, registered in order by Install.
class Routes {
 public:
  explicit Routes(Server* s) : s_(s) {}

  // Registers the authentication hooks and every route on `http`. The
  // handlers borrow this object, which must outlive `http`.
  void Install(httplib::Server& http);

 private:
  using Request = httplib::Request;
  using Response = httplib::Response;
  using Handler = void (Routes::*)(const Request&, Response&);

  // A handler of `http` that calls `method` on this object.
  // A write that this standby forwards (t_request.forward_to, set before
  // routing, when the body had not been read yet) goes to the leader
  // instead.
  httplib::Server::Handler Bind(Handler method) {
    return [this, method](const Request& req, Response& res) {
      if (!t_request.forward_to.empty()) {
        if (!ForwardToLeader(req, t_request.forward_to, res)) SendStandby(res);
        return;
      }
      (this->*method)(req, res);
    };
  }

  Result<RunRecord> FindRun(const std::string& id);
  SpecPtr SpecForRun(const RunRecord& run);
  // Nodes (step instances, or steps not started yet), edges and layers.
  Json Graph(const RunRecord& run, const std::vector<StepRecord>& steps);

  // Authentication, authorization (RouteRules, engine/server/authz.h) and,
  // after every route, request counting and the audit log of writes.
  httplib::Server::HandlerResponse Authenticate(const Request& req, Response& res);
  // Records in t_request the run (resolved to its full id) and pipeline
  // that the path names, for the scope check and the audit log.
  void ResolveTarget(const RouteMatch& route);
  // Refuses (404, as for what does not exist) a scoped identity's request
  // for a pipeline or run outside its scope. False when it answered.
  bool CheckScope(const RouteMatch& route, Response& res);
  // For a write on a standby replica (ServerOptions::standby_refuses_writes):
  // marks it to be forwarded to the leader (t_request.forward_to), or
  // answers 503 naming the leader. True when it answered.
  bool RefuseOnStandby(const Request& req, const RouteMatch& route, Response& res);
  // 503 naming the leader, for a write this standby does not act on.
  void SendStandby(Response& res);
  // Sends `req` to the leader at `leader_url` and answers with its answer.
  // False when the leader could not be reached (nothing answered yet).
  bool ForwardToLeader(const Request& req, const std::string& leader_url, Response& res);
  void AfterRequest(const Request& req, Response& res);
  void RecordAudit(const Response& res);

  // Health, metrics, the API description.
  void GetHealth(const Request& req, Response& res);
  void GetReady(const Request& req, Response& res);
  void GetMetrics(const Request& req, Response& res);
  void GetOpenApi(const Request& req, Response& res);

  // Pipelines and schedules.
  void ListPipelines(const Request& req, Response& res);
  void GetPipeline(const Request& req, Response& res);
  Json ScheduleJson(const PipelineSpec& spec);
  void SubmitRun(const Request& req, Response& res);
  void GetPipelineMetrics(const Request& req, Response& res);
  void PostReload(const Request& req, Response& res);
  void ListSchedules(const Request& req, Response& res);

  // Runs, their steps, logs and artifacts; lineage.
  void ListRuns(const Request& req, Response& res);
  void GetRun(const Request& req, Response& res);
  void GetRunGraph(const Request& req, Response& res);
  void ListRunSteps(const Request& req, Response& res);
  void GetRunStep(const Request& req, Response& res);
  void GetStepLogs(const Request& req, Response& res);
  void CancelRun(const Request& req, Response& res);
  void DeleteRun(const Request& req, Response& res);
  void ResumeRun(const Request& req, Response& res);
  void RerunRun(const Request& req, Response& res);
  void ResumeOrRerun(const Request& req, Response& res, bool rerun);
  void ListRunArtifacts(const Request& req, Response& res);
  void GetLineage(const Request& req, Response& res);
  // Removes from `graph` the executions of runs the caller may not see (and
  // what only they touched). False when nothing of the root is left.
  bool FilterLineage(LineageGraph* graph);
  void ListAudit(const Request& req, Response& res);

  // Webhooks.
  void GithubWebhook(const Request& req, Response& res);
  void GitlabWebhook(const Request& req, Response& res);
  bool ClaimDelivery(const std::string& source, const std::string& id, Response& res);
  void TriggerPush(const std::string& body, const std::string& source, Response& res);

  // Who the caller is; the web UI's OIDC login.
  void GetWhoami(const Request& req, Response& res);
  void GetAuthLogin(const Request& req, Response& res);
  void GetAuthCallback(const Request& req, Response& res);
  void PostAuthLogout(const Request& req, Response& res);
  // The identity of an OIDC ID token (bearer or session cookie), into
  // t_request.identity. False when it answered (401, 403 or 503).
  bool AuthenticateOidc(const Request& req, const RouteMatch* route, Response& res);

  // The web UI.
  void GetUiIndex(const Request& req, Response& res);
  void GetUiAsset(const Request& req, Response& res);

  Server* s_;
};

void Routes::Install(httplib::Server& http) {
  // Authentication for everything under /api (the two webhook routes check
  // their own signatures; any other path, known or not, needs the token
  // before it is even looked up) and, when configured, /metrics; then the
  // route's rule decides.
  http.set_pre_routing_handler(
      [this](const Request& req, Response& res) { return Authenticate(req, res); });
  // Not through Bind: the answer is made, nothing is forwarded here.
  http.set_post_routing_handler([this](const Request& req, Response& res) { AfterRequest(req, res); });

  http.Get("/healthz", Bind(&Routes::GetHealth));
  http.Get("/readyz", Bind(&Routes::GetReady));
  http.Get("/metrics", Bind(&Routes::GetMetrics));
  http.Get("/api/v1/openapi.json", Bind(&Routes::GetOpenApi));

  http.Get("/api/v1/pipelines", Bind(&Routes::ListPipelines));
  http.Get(R"(/api/v1/pipelines/([^/]+))", Bind(&Routes::GetPipeline));
  http.Post(R"(/api/v1/pipelines/([^/]+)/runs)", Bind(&Routes::SubmitRun));
  http.Get(R"(/api/v1/pipelines/([^/]+)/metrics)", Bind(&Routes::GetPipelineMetrics));
  http.Post("/api/v1/reload", Bind(&Routes::PostReload));
  http.Get("/api/v1/schedules", Bind(&Routes::ListSchedules));

  http.Get("/api/v1/runs", Bind(&Routes::ListRuns));
  http.Get(R"(/api/v1/runs/([^/]+))", Bind(&Routes::GetRun));
  http.Delete(R"(/api/v1/runs/([^/]+))", Bind(&Routes::DeleteRun));
  http.Get(R"(/api/v1/runs/([^/]+)/graph)", Bind(&Routes::GetRunGraph));
  http.Get(R"(/api/v1/runs/([^/]+)/steps)", Bind(&Routes::ListRunSteps));
  http.Get(R"(/api/v1/runs/([^/]+)/steps/([^/]+))", Bind(&Routes::GetRunStep));
  http.Get(R"(/api/v1/runs/([^/]+)/steps/([^/]+)/logs)", Bind(&Routes::GetStepLogs));
  http.Post(R"(/api/v1/runs/([^/]+)/cancel)", Bind(&Routes::CancelRun));
  http.Post(R"(/api/v1/runs/([^/]+)/resume)", Bind(&Routes::ResumeRun));
  http.Post(R"(/api/v1/runs/([^/]+)/rerun)", Bind(&Routes::RerunRun));
  http.Get(R"(/api/v1/runs/([^/]+)/artifacts)", Bind(&Routes::ListRunArtifacts));
  http.Get("/api/v1/lineage", Bind(&Routes::GetLineage));
  http.Get("/api/v1/audit", Bind(&Routes::ListAudit));

  http.Post(kGithubWebhookPath, Bind(&Routes::GithubWebhook));
  http.Post(kGitlabWebhookPath, Bind(&Routes::GitlabWebhook));

  http.Get("/api/v1/whoami", Bind(&Routes::GetWhoami));
  http.Get("/auth/login", Bind(&Routes::GetAuthLogin));
  http.Get("/auth/callback", Bind(&Routes::GetAuthCallback));
  http.Post("/auth/logout", Bind(&Routes::PostAuthLogout));

  http.Get("/", Bind(&Routes::GetUiIndex));
  http.Get(R"(/ui/(.+))", Bind(&Routes::GetUiAsset));
}

Result<RunRecord> Routes::FindRun(const std::string& id) {
  if (auto q = s_->runs_->Queued(id)) return *q;
  return s_->store_->GetRun(id);
}

SpecPtr Routes::SpecForRun(const RunRecord& run) {
  if (!run.pipeline_digest.empty()) {
    std::lock_guard lock(s_->spec_cache_mu_);
    if (auto it = s_->spec_cache_.find(run.pipeline_digest); it != s_->spec_cache_.end())
      return it->second;
  }
  SpecPtr spec;
  if (!run.pipeline_yaml.empty()) {
    dsl::LoadResult loaded = dsl::LoadPipelineString(run.pipeline_yaml, run.pipeline_file);
    if (loaded.spec) spec = std::make_shared<const PipelineSpec>(std::move(*loaded.spec));
  }
  if (!spec) spec = s_->registry_->Find(run.pipeline);
  if (spec && !run.pipeline_digest.empty()) {
    std::lock_guard lock(s_->spec_cache_mu_);
    if (s_->spec_cache_.size() > 256) s_->spec_cache_.clear();
    s_->spec_cache_[run.pipeline_digest] = spec;
  }
  return spec;
}

Json Routes::Graph(const RunRecord& run, const std::vector<StepRecord>& steps) {
  SpecPtr spec = SpecForRun(run);
  Json nodes = Json::array(), edges = Json::array();
  std::map<std::string, std::vector<const StepRecord*>> by_step;
  for (const StepRecord& st : steps) by_step[st.step].push_back(&st);
  std::optional<PipelineGraph> graph;
  if (spec) {
    auto g = PipelineGraph::Build(*spec);
    if (g) graph = std::move(*g);
  }
  if (!graph) {
    for (const StepRecord& st : steps) {
      Json n = StepJson(st);
      n["id"] = st.instance;
      n["layer"] = 0;
      nodes.push_back(n);
    }
    return {{"nodes", nodes}, {"edges", edges}};
  }
  std::vector<int> layer(graph->size(), 0);
  int max_main = 0;
  for (int node : graph->TopologicalOrder()) {
    for (int up : graph->Upstream(node)) layer[node] = std::max(layer[node], layer[up] + 1);
    if (!graph->IsFinally(node)) max_main = std::max(max_main, layer[node]);
  }
  for (int node = graph->num_main(); node < graph->size(); ++node) layer[node] += max_main + 1;
  std::vector<std::vector<std::string>> ids(graph->size());
  for (int node = 0; node < graph->size(); ++node) {
    const StepSpec& step = graph->step(node);
    auto it = by_step.find(step.name);
    if (it == by_step.end()) {
      ids[node].push_back(step.name);
      nodes.push_back({{"id", step.name}, {"instance", step.name}, {"step", step.name},
                       {"phase", "Pending"}, {"layer", layer[node]}, {"type", step.type},
                       {"finally", graph->IsFinally(node)}, {"has_log", false},
                       {"attempts", 0}, {"duration_seconds", nullptr}});
      continue;
    }
    for (const StepRecord* st : it->second) {
      Json n = StepJson(*st);
      n["id"] = st->instance;
      n["layer"] = layer[node];
      n["type"] = step.type;
      n["finally"] = graph->IsFinally(node);
      nodes.push_back(n);
      ids[node].push_back(st->instance);
    }
  }
  for (int node = 0; node < graph->size(); ++node)
    for (int up : graph->Upstream(node))
      for (const std::string& from : ids[up])
        for (const std::string& to : ids[node]) edges.push_back({from, to});
  return {{"nodes", nodes}, {"edges", edges}};
}

httplib::Server::HandlerResponse Routes::Authenticate(const Request& req, Response& res) {
  t_request = RequestContext();
  t_request.route = FindRoute(req.method, req.path);
  const RouteMatch* route = t_request.route ? &*t_request.route : nullptr;
  bool api = req.path.rfind("/api/", 0) == 0;
  RouteAccess access = route ? route->rule->access : api ? RouteAccess::kRole : RouteAccess::kOpen;
  if (access == RouteAccess::kMetrics)
    access = s_->config_.metrics_require_auth ? RouteAccess::kRole : RouteAccess::kOpen;
  if (access != RouteAccess::kRole) {
    // Webhooks (signed, not token-authenticated) start runs: not here on a standby.
    return route && RefuseOnStandby(req, *route, res) ? httplib::Server::HandlerResponse::Handled
                                                 : httplib::Server::HandlerResponse::Unhandled;
  }
  t_request.identity = s_->auth_->Authenticate(req.get_header_value("Authorization"));
  if (!t_request.identity && s_->oidc_ && !AuthenticateOidc(req, route, res))
    return httplib::Server::HandlerResponse::Handled;
  if (!t_request.identity) {
    SendUnauthorized(res, "a valid 'Authorization: Bearer <token>' header is required; "
                          "tokens are configured (hashed) in the server config");
    return httplib::Server::HandlerResponse::Handled;
  }
  if (!route) {
    SendError(res, Status::NotFound("no route " + req.method + " " + req.path +
                                    "; see /api/v1/openapi.json"));
    return httplib::Server::HandlerResponse::Handled;
  }
  ResolveTarget(*route);
  if (Status s = CheckRole(*t_request.identity, *route->rule); !s.ok()) {
    SendError(res, s);
    return httplib::Server::HandlerResponse::Handled;
  }
  return CheckScope(*route, res) && !RefuseOnStandby(req, *route, res) ? httplib::Server::HandlerResponse::Unhandled
                                                                   : httplib::Server::HandlerResponse::Handled;
}

bool Routes::AuthenticateOidc(const Request& req, const RouteMatch* route, Response& res) {
  std::string header = req.get_header_value("Authorization"), token;
  bool from_cookie = false;
  if (header.rfind("Bearer ", 0) == 0) {
    token = header.substr(7);
    // Not a JWT: a configured token that did not match, answered as such.
    if (std::count(token.begin(), token.end(), '.') != 2) return true;
  } else if (header.empty()) {
    token = CookieValue(req.get_header_value("Cookie"), kSessionCookie);
    from_cookie = true;
  }
  if (token.empty()) return true;
  auto identity = s_->oidc_->Authenticate(token);
  if (!identity) {
    if (identity.error().code() == StatusCode::kUnauthenticated)
      SendUnauthorized(res, identity.error().message() + (from_cookie ? "; log in again at /auth/login" : ""));
    else
      SendError(res, identity.error());
    return false;
  }
  if (from_cookie && route && route->rule->write() && req.get_header_value(kCsrfHeader).empty()) {
    SendError(res, Status::PermissionDenied(std::string("a write signed in by the session cookie needs the ") +
                                            kCsrfHeader + " header (the web UI sends it)"));
    return false;
  }
  t_request.identity = std::move(*identity);
  return true;
}

void Routes::ResolveTarget(const RouteMatch& route) {
  t_request.pipeline = route.Param("pipeline");
  if (std::string run_text = route.Param("run"); !run_text.empty()) {
    // A run that does not exist is the handler's to answer.
    if (auto run = FindRun(run_text)) {
      t_request.run_id = run->id;
      t_request.pipeline = run->pipeline;
    }
  }
}

bool Routes::CheckScope(const RouteMatch& route, Response& res) {
  if (!t_request.run_id.empty() && !CallerMaySee(t_request.pipeline)) {
    // The same answer as for a run that does not exist: a scoped token
    // learns nothing of other pipelines' runs.
    SendError(res, Status::NotFound("no run '" + route.Param("run") + "' in this store (`sluice runs` lists them)"));
    return false;
  }
  if (!t_request.pipeline.empty() && !CallerMaySee(t_request.pipeline)) {
    SendError(res, Status::NotFound("no pipeline named '" + t_request.pipeline + "'"));
    return false;
  }
  return true;
}

void Routes::AfterRequest(const Request& req, Response& res) {
  if (req.path.rfind("/api/", 0) == 0)
    s_->metrics_->http_requests->Inc({{"code", std::to_string(res.status)}});
  RecordAudit(res);
  // An answer that no pre-routing call began (httplib's own 400 for a
  // malformed request, such as the unread body of a refused POST on a
  // kept-alive connection) must not inherit this request's identity.
  t_request = RequestContext();
}

// Every write answered to an identity (refusals included) or to a webhook
// whose signature held. A request without valid credentials is not recorded:
// anyone can send those, and the log would be theirs to fill.
void Routes::RecordAudit(const Response& res) {
  const RequestContext& c = t_request;
  if (!c.route || !c.route->rule->write() || c.forwarded) return;
  AuditEntry e;
  e.method = c.route->rule->method;
  e.route = c.route->rule->path;
  e.code = res.status;
  e.run_id = c.run_id;
  e.pipeline = c.pipeline;
  Json body = Json::parse(res.body, nullptr, false);
  std::vector<AuditEntry> entries;
  if (c.identity) {
    e.who = c.identity->name;
    e.role = RoleName(c.identity->role);
    // A submitted run's id is known only from the answer.
    if (e.run_id.empty() && body.is_object() && body.contains("run_id") && body["run_id"].is_string())
      e.run_id = body["run_id"];
    entries.push_back(e);
  } else if (c.route->rule->access == RouteAccess::kSignature && res.status != 401) {
    e.who = "webhook:" + std::string(e.route.substr(e.route.rfind('/') + 1));
    // One entry per run the push started, or one for the delivery.
    if (body.is_object() && body.contains("triggered") && body["triggered"].is_array())
      for (const Json& t : body["triggered"]) {
        AuditEntry run = e;
        run.pipeline = t.value("pipeline", "");
        run.run_id = t.value("run_id", "");
        entries.push_back(run);
      }
    if (entries.empty()) entries.push_back(e);
  }
  for (const AuditEntry& entry : entries)
    if (Status s = s_->store_->AppendAudit(entry); !s.ok())
      std::fprintf(stderr, "sluice serve: audit log: %s\n", s.message().c_str());
}

void Routes::GetHealth(const Request&, Response& res) { res.set_content("ok\n", "text/plain"); }

// Ready when the store answers and the leader election has answered once
// (leader or standby: both serve reads). The reason says nothing about the
// store's address or the leader.
void Routes::GetReady(const Request&, Response& res) {
  std::string why = s_->NotReadyReason();
  res.status = why.empty() ? 200 : 503;
  res.set_content(why.empty() ? "ok\n" : "not ready: " + why + "\n", "text/plain");
}

bool Routes::RefuseOnStandby(const Request& req, const RouteMatch& route, Response& res) {
  if (!s_->options_.standby_refuses_writes || !s_->leader_ || !route.rule->write()) return false;
  if (std::string_view(route.rule->path) == "/api/v1/reload") return false;
  if (s_->leading_state_.load() == 1) return false;
  if (std::string leader_url = s_->leader_->LeaderUrl(); !leader_url.empty() && !req.has_header(kForwardedHeader)) {
    t_request.forward_to = leader_url;  // by the handler, once the body is read
    return false;
  }
  SendStandby(res);
  return true;
}

void Routes::SendStandby(Response& res) {
  std::string leader = s_->leader_->Leader();
  res.set_header("Retry-After", "1");
  if (!leader.empty()) res.set_header("X-Sluice-Leader", leader);
  SendError(res, Status::Unavailable("this replica (" + s_->leader_->Identity() + ") is standing by; only the leader (" +
                                     (leader.empty() ? std::string("not known yet") : leader) +
                                     ") starts and changes runs: send writes to it, or retry"));
}

bool Routes::ForwardToLeader(const Request& req, const std::string& leader_url, Response& res) {
  httplib::Client leader(leader_url);
  leader.set_connection_timeout(5, 0);
  leader.set_read_timeout(60, 0);
  httplib::Request out;
  out.method = req.method;
  out.path = req.target;
  out.body = req.body;
  // The end-to-end headers (credentials, content type, webhook signatures
  // and delivery ids); not the hop-by-hop ones, which belong to this
  // connection.
  static const std::set<std::string> kHopByHop = {"connection", "keep-alive", "transfer-encoding", "te",
                                                  "upgrade", "content-length", "host", "expect",
                                                  "proxy-authorization", "trailer"};
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (kHopByHop.count(lower) == 0 && lower != "remote_addr" && lower != "remote_port" &&
        lower != "local_addr" && lower != "local_port")
      out.headers.emplace(name, value);
  }
  out.headers.emplace(kForwardedHeader, s_->leader_->Identity());
  auto answer = leader.send(out);
  if (!answer) return false;  // the leader is gone: refuse, naming it
  res.status = answer->status;
  for (const char* name : {"Location", "Retry-After", "WWW-Authenticate", "X-Sluice-Leader"})
    if (answer->has_header(name)) res.set_header(name, answer->get_header_value(name));
  res.set_header("X-Sluice-Leader", s_->leader_->Leader());
  res.set_content(answer->body, answer->get_header_value("Content-Type").c_str());
  // The leader records the write in the audit log; this replica does not.
  t_request.forwarded = true;
  return true;
}

void Routes::GetMetrics(const Request&, Response& res) {
  s_->metrics_->runs_queued->Set({}, static_cast<double>(s_->runs_->QueuedRuns().size()));
  s_->metrics_->http_connections_open->Set({}, s_->http_->open_connections());
  res.set_content(s_->metrics_registry_.Render(), "text/plain; version=0.0.4; charset=utf-8");
}

void Routes::GetOpenApi(const Request&, Response& res) { SendJson(res, 200, OpenApiDocument()); }

void Routes::ListPipelines(const Request&, Response& res) {
  Json list = Json::array();
  for (const PipelineFile& f : s_->registry_->List()) {
    if (!CallerMaySee(f.name)) continue;
    Json diags = Json::array();
    for (const auto& d : f.diagnostics)
      diags.push_back({{"file", d.loc.file}, {"line", d.loc.line}, {"column", d.loc.column},
                       {"severity", d.severity == dsl::Severity::kError ? "error" : "warning"},
                       {"message", d.message}, {"text", d.ToString()}});
    Json p = {{"file", f.path}, {"name", f.name}, {"ok", f.ok}, {"has_good_version", f.spec != nullptr},
              {"digest", f.digest}, {"diagnostics", diags}, {"loaded_at", Iso(f.loaded_at)}};
    if (f.spec) {
      p["description"] = f.spec->description;
      p["steps"] = f.spec->steps.size() + f.spec->finally_steps.size();
      p["scheduled"] = f.spec->schedule.has_value();
    }
    list.push_back(p);
  }
  SendJson(res, 200, {{"pipelines", list}});
}

void Routes::GetPipeline(const Request& req, Response& res) {
  SpecPtr spec = s_->registry_->Find(req.matches[1]);
  if (!spec) return SendError(res, Status::NotFound("no pipeline named '" + std::string(req.matches[1]) + "'"));
  Json params = Json::array();
  for (const ParamSpec& p : spec->params)
    params.push_back({{"name", p.name}, {"type", ParamTypeName(p.type)},
                      {"default", p.default_value ? *p.default_value : Json(nullptr)},
                      {"required", p.required}, {"description", p.description}});
  Json steps = Json::array();
  auto graph = PipelineGraph::Build(*spec);
  for (const auto* list : {&spec->steps, &spec->finally_steps})
    for (const StepSpec& st : *list) {
      Json up = Json::array();
      if (graph) {
        int node = graph->Find(st.name);
        for (int u : graph->Upstream(node)) up.push_back(graph->step(u).name);
      }
      steps.push_back({{"name", st.name}, {"type", st.type}, {"upstream", up},
                       {"finally", st.is_finally}, {"foreach", st.foreach.has_value()}});
    }
  Json out = {{"name", spec->name}, {"description", spec->description}, {"file", spec->file},
              {"digest", spec->file_digest}, {"params", params}, {"steps", steps},
              {"executor", spec->executor}};
  if (spec->schedule) out["schedule"] = ScheduleJson(*spec);
  SendJson(res, 200, out);
}

// The pipeline's schedule with its next five times and the last one run.
Json Routes::ScheduleJson(const PipelineSpec& spec) {
  const ScheduleSpec& sc = *spec.schedule;
  Json next = Json::array();
  if (auto crons = ParseSchedule(sc)) {
    SysSeconds t = std::chrono::floor<std::chrono::seconds>(s_->clock_->Now());
    for (int i = 0; i < 5; ++i) {
      std::optional<SysSeconds> n;
      for (const auto& c : *crons)
        if (auto x = c.Next(t); x && (!n || *x < *n)) n = x;
      if (!n) break;
      next.push_back(date::format("%FT%TZ", *n));
      t = *n;
    }
  }
  auto last = s_->scheduler_->LastScheduled(spec.name);
  return {{"cron", sc.cron}, {"timezone", sc.timezone},
          {"concurrencyPolicy", sc.concurrency_policy}, {"catchup", sc.catchup},
          {"catchupLimit", sc.catchup_limit}, {"historyLimit", sc.history_limit},
          {"next", next},
          {"last_scheduled", last ? Json(date::format("%FT%TZ", *last)) : Json(nullptr)}};
}

void Routes::SubmitRun(const Request& req, Response& res) {
  auto body = ParseSubmitBody(req.body);
  if (!body) return SendError(res, body.error());
  SubmitRequest sub;
  sub.pipeline = req.matches[1];
  if (!body->params.is_null()) sub.typed_params = std::move(body->params);
  sub.run_id = std::move(body->run_id);
  sub.trigger = "api";
  auto id = s_->runs_->Submit(std::move(sub));
  if (!id) return SendError(res, id.error());
  SendJson(res, 201, {{"run_id", *id}, {"url", "/api/v1/runs/" + *id}});
}

void Routes::GetPipelineMetrics(const Request& req, Response& res) {
  RunFilter filter;
  filter.pipeline = req.matches[1];
  filter.limit = LimitParam(req, 20, 200);
  auto runs = s_->store_->ListRuns(filter);
  if (!runs) return SendError(res, runs.error());
  Json out = Json::array();
  std::set<std::string> names;
  for (const RunRecord& r : *runs) {
    auto steps = s_->store_->ListSteps(r.id);
    Json metrics = Json::object();
    if (steps)
      for (const StepRecord& st : *steps)
        for (const auto& [k, v] : st.metrics.items()) {
          metrics[st.instance + "." + k] = v;
          names.insert(st.instance + "." + k);
        }
    out.push_back({{"run", r.id}, {"phase", RunPhaseName(r.phase)}, {"created_at", Iso(r.created_at)},
                   {"params", r.params}, {"metrics", metrics}});
  }
  SendJson(res, 200, {{"pipeline", filter.pipeline}, {"metrics", Json(names)}, {"runs", out}});
}

void Routes::PostReload(const Request&, Response& res) { SendJson(res, 200, s_->Reload(true)); }

void Routes::ListSchedules(const Request&, Response& res) {
  Json out = Json::array();
  for (const std::string& name : s_->scheduler_->Pipelines()) {
    if (!CallerMaySee(name)) continue;
    SpecPtr spec = s_->registry_->Find(name);
    auto last = s_->scheduler_->LastScheduled(name);
    Json j = {{"pipeline", name},
              {"last_scheduled", last ? Json(date::format("%FT%TZ", *last)) : Json(nullptr)},
              {"active_runs", s_->runs_->ActiveScheduledRuns(name)}};
    if (spec && spec->schedule) {
      j["cron"] = spec->schedule->cron;
      j["timezone"] = spec->schedule->timezone;
    }
    out.push_back(j);
  }
  SendJson(res, 200, {{"schedules", out}});
}

void Routes::ListRuns(const Request& req, Response& res) {
  RunFilter filter;
  filter.pipeline = req.get_param_value("pipeline");
  if (req.has_param("phase") && !req.get_param_value("phase").empty()) {
    auto p = ParseRunPhase(req.get_param_value("phase"));
    if (!p) return SendError(res, Status::InvalidArgument("unknown phase '" + req.get_param_value("phase") +
                                                          "'; use Pending, Running, Succeeded, Failed, Error or Cancelled"));
    filter.phase = p;
  }
  if (Status s = SinceParam(req, &filter.since); !s.ok()) return SendError(res, s);
  filter.limit = LimitParam(req, 50, 1000);
  const size_t limit = static_cast<size_t>(filter.limit);
  // A scoped caller's runs are picked from all of them: the store filters
  // by one pipeline name, not by patterns.
  if (t_request.identity && t_request.identity->scoped()) filter.limit = 0;
  Json list = Json::array();
  if (!filter.phase || *filter.phase == RunPhase::kPending)
    for (const RunRecord& r : s_->runs_->QueuedRuns())
      if ((filter.pipeline.empty() || r.pipeline == filter.pipeline) && CallerMaySee(r.pipeline))
        list.push_back(RunJson(r));
  auto runs = s_->store_->ListRuns(filter);
  if (!runs) return SendError(res, runs.error());
  size_t taken = 0;
  for (const RunRecord& r : *runs) {
    if (taken == limit) break;
    if (!CallerMaySee(r.pipeline)) continue;
    list.push_back(RunJson(r));
    ++taken;
  }
  SendJson(res, 200, {{"runs", list}});
}

void Routes::GetRun(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  Json steps = Json::array();
  if (auto list = s_->store_->ListSteps(run->id))
    for (const StepRecord& st : *list) steps.push_back(StepJson(st));
  SendJson(res, 200, {{"run", RunJson(*run)}, {"steps", steps}, {"active", s_->runs_->IsActive(run->id)}});
}

void Routes::GetRunGraph(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  std::vector<StepRecord> steps;
  if (auto list = s_->store_->ListSteps(run->id)) steps = std::move(*list);
  Json g = Graph(*run, steps);
  g["run"] = RunJson(*run);
  SendJson(res, 200, g);
}

void Routes::ListRunSteps(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  Json steps = Json::array();
  if (auto list = s_->store_->ListSteps(run->id))
    for (const StepRecord& st : *list) steps.push_back(StepJson(st));
  SendJson(res, 200, {{"steps", steps}});
}

void Routes::GetRunStep(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  auto step = s_->store_->GetStep(run->id, req.matches[2]);
  if (!step) return SendError(res, step.error());
  SendJson(res, 200, StepJson(*step));
}

void Routes::GetStepLogs(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  std::string run_id = run->id, instance = req.matches[2];
  auto step = s_->store_->GetStep(run_id, instance);
  if (!step) return SendError(res, step.error());
  if (step->log_path.empty())
    return SendError(res, Status::NotFound("step " + instance + " has no log yet (phase " +
                                           NodePhaseName(step->phase) + ")"));
  int64_t offset = 0;
  if (req.has_param("offset")) {
    auto parsed = ParseLogOffset(req.get_param_value("offset"));
    if (!parsed) return SendError(res, parsed.error());
    offset = *parsed;
  }
  bool follow = Truthy(req.get_param_value("follow"));
  std::string path = step->log_path;
  if (!follow) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return SendError(res, Status::NotFound("log file " + path + " is gone"));
    // Past the end: nothing to send, and the next offset is the end.
    offset = std::min<int64_t>(offset, std::max<int64_t>(0, static_cast<int64_t>(in.tellg())));
    in.seekg(offset);
    std::stringstream ss;
    ss << in.rdbuf();
    res.set_header("X-Log-Size", std::to_string(offset + static_cast<int64_t>(ss.str().size())));
    res.set_content(ss.str(), "text/plain; charset=utf-8");
    return;
  }
  Store* store = s_->store_.get();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::hours(24);
  res.set_chunked_content_provider(
      "text/plain; charset=utf-8",
      [store, run_id, instance, path, offset, deadline](size_t, httplib::DataSink& sink) mutable {
        char buf[65536];
        while (true) {
          bool ended = false;
          auto st = store->GetStep(run_id, instance);
          if (!st || IsTerminal(st->phase)) ended = true;
          std::ifstream in(path, std::ios::binary);
          if (in) {
            in.seekg(offset);
            while (in.read(buf, sizeof buf) || in.gcount() > 0) {
              if (!sink.write(buf, static_cast<size_t>(in.gcount()))) return false;
              offset += in.gcount();
            }
          }
          if (ended || std::chrono::steady_clock::now() > deadline || !sink.is_writable()) {
            sink.done();
            return true;
          }
          // The step writes its log from another process: poll the file.
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      });
}

void Routes::CancelRun(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  std::string how;
  Status st = s_->runs_->Cancel(run->id, &how);
  if (!st.ok()) return SendError(res, st);
  SendJson(res, 202, {{"message", how}, {"run_id", run->id}});
}

void Routes::DeleteRun(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  if (s_->runs_->IsActive(run->id) || !IsTerminal(run->phase))
    return SendError(res, Status::FailedPrecondition("run " + run->id + " has not ended; cancel it first"));
  if (Status st = DeleteRunAndFiles(s_->store_.get(), s_->options_.state_dir, run->id); !st.ok())
    return SendError(res, st);
  SendJson(res, 200, {{"message", "deleted run " + run->id}, {"run_id", run->id}});
}

void Routes::ResumeRun(const Request& req, Response& res) { ResumeOrRerun(req, res, false); }

void Routes::RerunRun(const Request& req, Response& res) { ResumeOrRerun(req, res, true); }

void Routes::ResumeOrRerun(const Request& req, Response& res, bool rerun) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  // A resume takes no fields, but its body must still be a JSON object.
  Result<std::vector<std::string>> from = std::vector<std::string>();
  if (rerun) from = ParseRerunBody(req.body);
  else if (auto body = ParseBodyObject(req.body); !body) from = Error(body.error());
  if (!from) return SendError(res, from.error());
  SubmitRequest sub;
  sub.pipeline = run->pipeline;
  sub.resume_run_id = run->id;
  sub.typed_params = run->params;
  sub.trigger = rerun ? "rerun" : "resume";
  sub.spec = SpecForRun(*run);
  if (rerun) {
    sub.rerun_from = std::move(*from);
    if (sub.spec)
      for (const std::string& name : sub.rerun_from)
        if (!sub.spec->FindStep(name))
          return SendError(res, Status::InvalidArgument("pipeline '" + run->pipeline + "' has no step '" + name + "'"));
  } else if (s_->runs_->IsActive(run->id) || run->phase == RunPhase::kRunning) {
    return SendError(res, Status::FailedPrecondition("run " + run->id + " is still running; cancel it first"));
  }
  auto id = s_->runs_->Submit(std::move(sub));
  if (!id) return SendError(res, id.error());
  SendJson(res, 201, {{"run_id", *id}, {"url", "/api/v1/runs/" + *id}, {"resumes", run->id}});
}

void Routes::ListRunArtifacts(const Request& req, Response& res) {
  auto run = FindRun(req.matches[1]);
  if (!run) return SendError(res, run.error());
  Json out = Json::array();
  if (auto steps = s_->store_->ListSteps(run->id))
    for (const StepRecord& st : *steps) {
      for (const auto& b : st.outputs) {
        Json j = ArtifactJson(b.artifact);
        j["name"] = b.name;
        j["direction"] = "output";
        j["instance"] = st.instance;
        j["step"] = st.step;
        j["ref"] = run->id + "/" + st.instance + "/" + b.name;
        out.push_back(j);
      }
      for (const auto& b : st.inputs) {
        Json j = ArtifactJson(b.artifact);
        j["name"] = b.name;
        j["direction"] = "input";
        j["instance"] = st.instance;
        j["step"] = st.step;
        out.push_back(j);
      }
    }
  SendJson(res, 200, {{"run", run->id}, {"artifacts", out}});
}

void Routes::GetLineage(const Request& req, Response& res) {
  std::string target_text = req.get_param_value("target");
  if (target_text.empty())
    return SendError(res, Status::InvalidArgument("give ?target= an artifact digest prefix, RUN/STEP/NAME, RUN/STEP or a run id"));
  auto target = ResolveLineageTarget(s_->store_.get(), target_text);
  if (!target) return SendError(res, target.error());
  LineageOptions opts;
  opts.downstream = Truthy(req.get_param_value("downstream"));
  if (req.has_param("depth")) opts.max_depth = std::clamp(std::atoi(req.get_param_value("depth").c_str()), 1, 64);
  opts.max_nodes = 2000;
  auto graph = QueryLineage(s_->store_.get(), *target, opts);
  if (!graph) return SendError(res, graph.error());
  if (t_request.identity && t_request.identity->scoped() && !FilterLineage(&*graph))
    return SendError(res, Status::NotFound("nothing matches '" + target_text + "' in the pipelines this token may see"));
  Json out = RenderLineageJson(*graph);
  out["downstream"] = opts.downstream;
  SendJson(res, 200, out);
}

bool Routes::FilterLineage(LineageGraph* graph) {
  std::map<std::string, bool> visible;  // by run id
  auto run_visible = [&](const std::string& run_id) {
    auto it = visible.find(run_id);
    if (it != visible.end()) return it->second;
    auto run = s_->store_->GetRun(run_id);
    return visible[run_id] = run.has_value() && CallerMaySee(run->pipeline);
  };
  const LineageTarget& root = graph->root;
  bool root_touched = false, root_visible = false;
  for (const auto& edge : graph->edges)
    if (root.kind == LineageTarget::Kind::kArtifact && edge.digest == root.digest) {
      root_touched = true;
      auto it = graph->executions.find(edge.execution_id);
      root_visible = root_visible || (it != graph->executions.end() && run_visible(it->second.execution.run_id));
    }
  if (root.kind == LineageTarget::Kind::kRun && !run_visible(root.run_id)) return false;
  if (root.kind == LineageTarget::Kind::kExecution) {
    auto it = graph->executions.find(root.execution_id);
    if (it == graph->executions.end() || !run_visible(it->second.execution.run_id)) return false;
  }
  if (root_touched && !root_visible) return false;
  for (auto it = graph->executions.begin(); it != graph->executions.end();)
    it = run_visible(it->second.execution.run_id) ? std::next(it) : graph->executions.erase(it);
  std::set<std::string> kept_digests = {root.digest};
  std::vector<LineageGraph::Edge> edges;
  for (const auto& edge : graph->edges)
    if (graph->executions.count(edge.execution_id)) {
      edges.push_back(edge);
      kept_digests.insert(edge.digest);
    }
  graph->edges = std::move(edges);
  for (auto it = graph->artifacts.begin(); it != graph->artifacts.end();)
    it = kept_digests.count(it->first) ? std::next(it) : graph->artifacts.erase(it);
  return true;
}

void Routes::ListAudit(const Request& req, Response& res) {
  AuditFilter filter;
  filter.limit = LimitParam(req, 100, 10000);
  if (Status s = SinceParam(req, &filter.since); !s.ok()) return SendError(res, s);
  const size_t limit = static_cast<size_t>(filter.limit);
  if (t_request.identity && t_request.identity->scoped()) filter.limit = 0;
  auto entries = s_->store_->ListAudit(filter);
  if (!entries) return SendError(res, entries.error());
  Json out = Json::array();
  for (const AuditEntry& e : *entries) {
    if (out.size() == limit) break;
    // A scoped admin sees the entries of its pipelines only.
    if (t_request.identity && t_request.identity->scoped() &&
        (e.pipeline.empty() || !CallerMaySee(e.pipeline)))
      continue;
    out.push_back(AuditEntryJson(e));
  }
  SendJson(res, 200, {{"entries", out}});
}

void Routes::GithubWebhook(const Request& req, Response& res) {
  if (!VerifyGithubSignature(s_->config_.github_secret, req.body, req.get_header_value("X-Hub-Signature-256")))
    return SendUnauthorized(res, "X-Hub-Signature-256 is missing or does not match the configured webhooks.github secret");
  std::string type = req.get_header_value("X-GitHub-Event");
  if (type == "ping") return SendJson(res, 200, {{"message", "pong"}});
  if (!type.empty() && type != "push")
    return SendJson(res, 202, {{"message", "ignored event '" + type + "'; only push triggers pipelines"}, {"triggered", Json::array()}});
  if (!ClaimDelivery("github", req.get_header_value("X-GitHub-Delivery"), res)) return;
  TriggerPush(req.body, "github", res);
}

void Routes::GitlabWebhook(const Request& req, Response& res) {
  if (!VerifyGitlabToken(s_->config_.gitlab_token_sha256, req.get_header_value("X-Gitlab-Token")))
    return SendUnauthorized(res, "X-Gitlab-Token is missing or does not match webhooks.gitlab.tokenSha256");
  std::string type = req.get_header_value("X-Gitlab-Event");
  if (!type.empty() && type != "Push Hook")
    return SendJson(res, 202, {{"message", "ignored event '" + type + "'; only Push Hook triggers pipelines"}, {"triggered", Json::array()}});
  // Idempotency-Key stays the same across GitLab's retries of one event.
  std::string id = req.get_header_value("Idempotency-Key");
  if (id.empty()) id = req.get_header_value("X-Gitlab-Event-UUID");
  if (!ClaimDelivery("gitlab", id, res)) return;
  TriggerPush(req.body, "gitlab", res);
}

// A delivery already handled answers 200 and starts nothing. False when
// the request is answered (a duplicate, or a malformed id).
bool Routes::ClaimDelivery(const std::string& source, const std::string& id, Response& res) {
  if (id.empty()) return true;  // no id to recognise it by: handled as new
  if (!IsDeliveryId(id)) {
    SendError(res, Status::InvalidArgument("the delivery id header is not 1-128 printable ASCII "
                                           "characters"));
    return false;
  }
  TimePoint first;
  if (s_->deliveries_->Claim(source + ":" + id, s_->clock_->Now(), &first)) return true;
  SendJson(res, 200, {{"message", "duplicate delivery " + id + " (first received " + Iso(first) +
                                      "); nothing triggered"},
                      {"duplicate", true}, {"delivery", id}, {"triggered", Json::array()}});
  return false;
}

// Submits a run of every pipeline whose files the push changed.
void Routes::TriggerPush(const std::string& body, const std::string& source, Response& res) {
  auto event = ParsePushEvent(body);
  if (!event) return SendError(res, event.error());
  s_->Reload(false);
  Json triggered = Json::array();
  for (const std::string& name : s_->registry_->PipelinesTouchedBy(event->changed)) {
    SubmitRequest sub;
    sub.pipeline = name;
    sub.trigger = "webhook";
    auto id = s_->runs_->Submit(std::move(sub));
    triggered.push_back(id ? Json{{"pipeline", name}, {"run_id", *id}}
                           : Json{{"pipeline", name}, {"error", id.error().message()}});
  }
  SendJson(res, 202, {{"source", source}, {"ref", event->ref}, {"after", event->after},
                      {"changed", event->changed}, {"triggered", triggered}});
}

void Routes::GetWhoami(const Request&, Response& res) {
  const Identity& who = *t_request.identity;
  SendJson(res, 200, {{"name", who.name}, {"role", RoleName(who.role)}, {"pipelines", who.pipelines}});
}

namespace {

// A Set-Cookie value: HttpOnly, SameSite=Lax, Secure when the UI is served
// over https (its redirect URL says so).
std::string CookieHeader(const OidcConfig& config, const std::string& name, const std::string& value,
                         const std::string& path, int64_t max_age) {
  return name + "=" + value + "; Path=" + path + "; Max-Age=" + std::to_string(max_age) +
         "; HttpOnly; SameSite=Lax" + (config.redirect_url.rfind("https://", 0) == 0 ? "; Secure" : "");
}

}  // namespace

void Routes::GetAuthLogin(const Request&, Response& res) {
  if (!s_->oidc_ || s_->oidc_->config().redirect_url.empty())
    return SendError(res, Status::NotFound("web UI login is not configured (oidc.redirectURL in the server config)"));
  auto endpoints = s_->oidc_->Endpoints();
  if (!endpoints) return SendError(res, endpoints.error());
  std::string state = RandomUrlToken(), verifier = RandomUrlToken();
  res.set_header("Set-Cookie", CookieHeader(s_->oidc_->config(), kLoginCookie, state + "." + verifier, "/auth/", 600));
  res.set_header("Cache-Control", "no-store");
  res.set_redirect(AuthorizationUrl(*endpoints, s_->oidc_->config(), state, PkceChallenge(verifier)));
}

void Routes::GetAuthCallback(const Request& req, Response& res) {
  if (!s_->oidc_ || s_->oidc_->config().redirect_url.empty())
    return SendError(res, Status::NotFound("web UI login is not configured (oidc.redirectURL in the server config)"));
  res.set_header("Cache-Control", "no-store");
  if (req.has_param("error"))
    return SendUnauthorized(res, "the issuer refused the login: " + req.get_param_value("error").substr(0, 100));
  std::string login = CookieValue(req.get_header_value("Cookie"), kLoginCookie);
  size_t dot = login.find('.');
  if (dot == std::string::npos)
    return SendError(res, Status::InvalidArgument("no login in progress (its cookie is missing or expired); "
                                                  "start again at /auth/login"));
  if (!ConstantTimeEquals(login.substr(0, dot), req.get_param_value("state")))
    return SendError(res, Status::InvalidArgument("the login's state does not match; start again at /auth/login"));
  auto id_token = s_->oidc_->ExchangeCode(req.get_param_value("code"), login.substr(dot + 1));
  if (!id_token) return SendError(res, id_token.error());
  auto identity = s_->oidc_->Authenticate(*id_token);
  if (!identity) return SendError(res, identity.error());
  auto claims = s_->oidc_->Verify(*id_token);
  int64_t max_age = claims ? std::max<int64_t>(0, claims->value("exp", int64_t{0}) - std::time(nullptr)) : 0;
  res.set_header("Set-Cookie", CookieHeader(s_->oidc_->config(), kLoginCookie, "", "/auth/", 0));
  res.headers.emplace("Set-Cookie", CookieHeader(s_->oidc_->config(), kSessionCookie, *id_token, "/", max_age));
  res.set_redirect("/");
}

// Not CSRF-checked: the worst another site's form can do is log the user out.
void Routes::PostAuthLogout(const Request&, Response& res) {
  OidcConfig none;
  res.set_header("Set-Cookie", CookieHeader(s_->oidc_ ? s_->oidc_->config() : none, kSessionCookie, "", "/", 0));
  SendJson(res, 200, {{"message", "logged out"}});
}

void Routes::GetUiIndex(const Request&, Response& res) { ServeUiAsset("index.html", res); }

void Routes::GetUiAsset(const Request& req, Response& res) { ServeUiAsset(req.matches[1], res); }

void Server::InstallRoutes() {
  auto routes = std::make_shared<Routes>(this);
  routes->Install(*http_);
  // The handlers capture a raw pointer to `routes`; keep it alive with the server.
  // A handler that throws (a bug) answers a JSON 500 that names no
  // internals; the connection and the server go on.
  http_->set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                                  std::exception_ptr) {
    SendError(res, Status::Internal("internal error while answering " + req.method + " " +
                                    req.path + "; the server log may say more"));
  });
  http_->set_error_handler([routes](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && res.body.empty() && req.path.rfind("/api/", 0) == 0)
      SendError(res, Status::NotFound("no route " + req.method + " " + req.path +
                                      "; see /api/v1/openapi.json"));
  });
}

int Serve(const ServerOptions& options, ExecutorsFactory executors) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // threads started below inherit the mask
  ::signal(SIGPIPE, SIG_IGN);
  Server server(options, std::move(executors));
  Status st = server.Start();
  if (!st.ok()) {
    std::fprintf(stderr, "sluice serve: %s\n", st.message().c_str());
    return st.code() == StatusCode::kInvalidArgument || st.code() == StatusCode::kNotFound ? 2 : 1;
  }
  std::fprintf(stderr, "sluice serve: listening on %s (pipelines %s, store %s)\n",
               server.url().c_str(), options.pipelines_dir.c_str(), options.state_dir.c_str());
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "sluice serve: %s received, stopping (runs are cancelled)\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
  server.Stop();
  return 0;
}

}  // namespace sluice::server
