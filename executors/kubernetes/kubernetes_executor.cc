#include "executors/kubernetes/kubernetes_executor.h"

#include <algorithm>
#include <fstream>

#include <spdlog/spdlog.h>

#include "engine/plan.h"
#include "engine/secret_mask.h"
#include "executors/kubernetes/api/objects.h"
#include "executors/kubernetes/kueue.h"
#include "engine/text.h"

namespace sluice {
namespace {

using k8s::WatchEvent;
using SteadyClock = std::chrono::steady_clock;

k8s::ResourceKind ToResourceKind(const KubernetesKind& w) {
  return k8s::ResourceKind{w.api_version, w.kind, w.plural, true};
}

std::string Key(const std::string& plural, const std::string& ns, const std::string& name) {
  return plural + "/" + ns + "/" + name;
}

std::string Label(const Json& obj, const std::string& key) {
  if (!obj.contains("metadata") || !obj["metadata"].contains("labels")) return "";
  return obj["metadata"]["labels"].value(key, "");
}

std::string Annotation(const Json& obj, const std::string& key) {
  if (!obj.contains("metadata") || !obj["metadata"].contains("annotations")) return "";
  return obj["metadata"]["annotations"].value(key, "");
}

// What a bare Pod is to the executor: its own object, the container "main"
// of the operator's kind (the pod a Job would have made).
KubernetesKind BarePodKind(const KubernetesKind& operator_kind) {
  return KubernetesKind{"v1", "Pod", "pods", "", operator_kind.container_name, 63};
}

bool IsBarePod(const KubernetesKind& kind) { return kind.plural == "pods"; }

// `kubernetes.logs: failed` (step or defaults): a succeeded step's log stays
// in its pod; only failures' logs are copied. The default, `all`, copies
// every log.
bool CopiesSuccessLog(const Task& task) {
  if (!task.config.is_object() || !task.config.contains("kubernetes")) return true;
  const Json& k = task.config["kubernetes"];
  return !(k.is_object() && k.contains("logs") && k["logs"] == "failed");
}

// The watch of a run's objects of `kind`: a pod watch sees only the pods
// sluice created itself, not a Job's or a TFJob's of the same run.
std::string WatchSelector(const KubernetesKind& kind, const std::string& run_id) {
  return IsBarePod(kind) ? k8s::BarePodSelector(run_id) : k8s::RunSelector(run_id);
}

// A finished bare pod's phase, for pods seen before their task.
bool PodFinished(const Json& pod) {
  if (!pod.contains("status") || !pod["status"].is_object()) return false;
  const std::string phase = pod["status"].value("phase", "");
  return phase == "Succeeded" || phase == "Failed";
}

Status MissingApi(const KubernetesKind& kind, const Status& st) {
  if (st.code() != StatusCode::kNotFound || kind.api_version == "batch/v1") return st;
  // A kind whose pods are not known is one a `type: resource` step names.
  const std::string hint = kind.pod_name_label.empty()
                               ? "is the CustomResourceDefinition of " + kind.kind + " (resource " + kind.plural +
                                     ") installed?"
                               : "is the training-operator installed?";
  return Status::FailedPrecondition("the cluster has no " + kind.api_version + " " + kind.kind + " API (" + hint +
                                    "): " + st.message());
}

// Why a pod that has not started is still waiting: a container's waiting
// reason (ErrImagePull, ImagePullBackOff, CreateContainerConfigError...),
// else its PodScheduled condition (Unschedulable: 0/3 nodes are available...).
std::string PendingReason(const Json& pod) {
  if (!pod.contains("status") || !pod["status"].is_object()) return "not scheduled yet";
  const Json& status = pod["status"];
  for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
    if (!status.contains(list) || !status[list].is_array()) continue;
    for (const auto& cs : status[list]) {
      if (!cs.contains("state") || !cs["state"].contains("waiting")) continue;
      const Json& w = cs["state"]["waiting"];
      const std::string reason = w.value("reason", "");
      if (reason.empty() || reason == "ContainerCreating" || reason == "PodInitializing") continue;
      const std::string message = w.value("message", "");
      return "container " + cs.value("name", "") + ": " + reason + (message.empty() ? "" : ": " + message);
    }
  }
  if (status.contains("conditions") && status["conditions"].is_array()) {
    for (const auto& c : status["conditions"]) {
      if (c.value("type", "") != "PodScheduled" || c.value("status", "") == "True") continue;
      const std::string reason = c.value("reason", ""), message = c.value("message", "");
      return (reason.empty() ? "not scheduled" : reason) + (message.empty() ? "" : ": " + message);
    }
  }
  return "its containers have not started";
}

}  // namespace

struct KubernetesExecutor::Live {
  Task task;
  const Operator* op = nullptr;  // the step type's, from the registry
  KubernetesKind kind;
  std::string ns, name;
  std::chrono::system_clock::time_point started_at;
  std::optional<SteadyClock::time_point> deadline;
  // When to look whether its pods are still Pending (Task::pending_timeout);
  // nullopt once they all started, or without a pending timeout.
  std::optional<SteadyClock::time_point> pending_check;
  bool probing = false;    // a pending check is queued or being made
  // Kueue (`kubernetes.queue`): the LocalQueue, and whether Kueue still
  // holds the object (true from the start until an event shows it admitted).
  // While held, `deadline` and `pending_check` are unset: both count from
  // admission.
  std::string queue;
  bool held = false;
  std::string note;  // the last note given for it
  // When Kueue admitted it (pendingTimeout counts pods Pending from then).
  std::optional<std::chrono::system_clock::time_point> admitted_at;
  bool finishing = false;  // a Finish is queued or being handled
  bool created = false;    // its create (or adoption) has returned
  bool any_kind = false;   // an object of any kind (no activeDeadlineSeconds)
};

void KubernetesExecutor::StartClocks(Live& r) const {
  const auto now = SteadyClock::now();
  if (r.task.timeout) {
    // An object of any kind has no activeDeadlineSeconds of its own: sluice's
    // deadline is the only one, so it gets no grace.
    r.deadline = now + *r.task.timeout + (r.any_kind ? Duration(0) : options_.deadline_grace);
  }
  if (r.task.pending_timeout && (IsBarePod(r.kind) || !r.kind.pod_name_label.empty()))
    r.pending_check = now + *r.task.pending_timeout;
}

void KubernetesExecutor::TrackQueueLocked(Live& r, const Json& obj) {
  if (r.queue.empty()) return;
  const bool held = k8s::HeldByKueue(obj);
  if (r.held && !held) {
    // Admitted: the step runs from now on.
    r.held = false;
    r.admitted_at = std::chrono::system_clock::now();
    StartClocks(r);
    NoteLocked(r, "");
    done_cv_.notify_all();
  } else if (held) {
    if (!r.held) {  // suspended again (preempted, evicted): back in the queue
      r.held = true;
      r.deadline.reset();
      r.pending_check.reset();
    }
    QueueProbeLocked(r.ns);
  }
}

void KubernetesExecutor::NoteLocked(Live& r, std::string text) {
  if (r.note == text) return;
  r.note = text;
  notes_[r.task.id] = TaskNote{r.task.id, std::move(text)};
  notes_wake_ = true;
  done_cv_.notify_all();  // Wait() returns so that the runner records it
}

void KubernetesExecutor::QueueProbeLocked(const std::string& ns) {
  QueueProbe& p = queue_probes_[ns];
  if (p.due || p.in_flight) return;
  // The first look waits a moment, so that Kueue has made the Workload.
  p.due = std::max(SteadyClock::now() + kQueueProbeDelay, p.last + kQueueProbeInterval);
  done_cv_.notify_all();
}

void KubernetesExecutor::ProbeQueue(const std::string& ns) {
  {
    // Nothing to look up when every task there was admitted meanwhile.
    std::lock_guard<std::mutex> lock(mu_);
    bool any = false;
    for (const auto& [id, r] : running_) any = any || (r->ns == ns && r->held && !r->finishing);
    if (!any) {
      queue_probes_[ns].in_flight = false;
      return;
    }
  }
  // One LIST of the namespace's Workloads serves every held task in it.
  auto workloads = client_->List(k8s::KueueWorkloadKind(), ns, "", k8s::Priority::kBackground);
  std::lock_guard<std::mutex> lock(mu_);
  QueueProbe& p = queue_probes_[ns];
  p.in_flight = false;
  p.last = SteadyClock::now();
  bool any_held = false;
  for (auto& [id, r] : running_) {
    if (r->ns != ns || !r->held || r->finishing) continue;
    any_held = true;
    NoteLocked(*r, workloads ? k8s::KueueQueueNote(r->queue, workloads->items, r->kind.kind, r->name)
                             : kQueuedNotePrefix + r->queue + " (Kueue: pending admission; its Workloads are not "
                                   "readable: " + workloads.error().message() + ")");
  }
  if (any_held) p.due = p.last + kQueueProbeInterval;
  done_cv_.notify_all();
}

std::vector<TaskNote> KubernetesExecutor::TakeNotes() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TaskNote> out;
  for (auto& [id, n] : notes_) out.push_back(std::move(n));
  notes_.clear();
  return out;
}

struct KubernetesExecutor::WatchEntry {
  std::unique_ptr<k8s::Watcher> watcher;
  std::string run_id;
  SteadyClock::time_point last_used;
};

KubernetesExecutor::KubernetesExecutor(std::unique_ptr<k8s::Client> client,
                                       KubernetesExecutorOptions options)
    : client_(std::move(client)), options_(std::move(options)) {
  for (int i = 0; i < std::max(1, options_.finisher_threads); ++i) {
    finishers_.emplace_back([this] { FinisherLoop(); });
  }
  if (options_.async_create) {
    for (int i = 0; i < std::max(1, options_.creator_threads); ++i) {
      finishers_.emplace_back([this] { CreatorLoop(); });
    }
  }
}

KubernetesExecutor::~KubernetesExecutor() {
  std::map<std::string, std::unique_ptr<WatchEntry>> watches;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    watches.swap(watches_);
  }
  finish_cv_.notify_all();
  create_cv_.notify_all();
  watches.clear();  // stops and joins each watcher
  for (auto& t : finishers_) t.join();  // after copying pending logs
}

std::string KubernetesExecutor::NamespaceFor(const Task& task) const {
  if (task.config.is_object() && task.config.contains("kubernetes") &&
      task.config["kubernetes"].is_object()) {
    const Json& k = task.config["kubernetes"];
    if (k.contains("namespace") && k["namespace"].is_string()) return k["namespace"].get<std::string>();
  }
  if (!options_.manifests.namespace_.empty()) return options_.manifests.namespace_;
  if (!client_->config().namespace_.empty()) return client_->config().namespace_;
  return "default";
}

bool KubernetesExecutor::CanRunMore() const {
  return options_.max_in_flight <= 0 || Running() < static_cast<size_t>(options_.max_in_flight);
}

size_t KubernetesExecutor::Running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_.size() + done_.size();
}

void KubernetesExecutor::EnsureWatch(const KubernetesKind& kind, const std::string& ns,
                                     const std::string& run_id) {
  std::string key = kind.plural + "/" + ns + "/" + run_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = watches_.find(key);
    if (it != watches_.end()) {
      it->second->last_used = SteadyClock::now();
      return;
    }
  }
  auto entry = std::make_unique<WatchEntry>();
  entry->run_id = run_id;
  entry->last_used = SteadyClock::now();
  std::string plural = kind.plural;
  k8s::WatchHandlers h;
  h.on_event = [this, plural](const WatchEvent& ev) { OnEvent(plural, ev); };
  h.on_error = [key](const Status& st) {
    spdlog::warn("kubernetes watch {}: {}", key, st.message());
  };
  entry->watcher = client_->Watch(ToResourceKind(kind), ns, WatchSelector(kind, run_id), h);
  std::lock_guard<std::mutex> lock(mu_);
  watches_.emplace(key, std::move(entry));
}

void KubernetesExecutor::OnEvent(const std::string& plural, const WatchEvent& ev) {
  const Json& obj = ev.object;
  if (!obj.contains("metadata")) return;
  std::string ns = obj["metadata"].value("namespace", "");
  std::string name = obj["metadata"].value("name", "");
  std::string key = Key(plural, ns, name);
  const auto arrived = SteadyClock::now();
  std::optional<TaskId> terminal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    terminal = OnEventLocked(plural, key, ev);
  }
  if (terminal && options_.on_terminal_event) options_.on_terminal_event(*terminal, arrived);
}

std::optional<TaskId> KubernetesExecutor::OnEventLocked(const std::string& plural,
                                                        const std::string& key,
                                                        const WatchEvent& ev) {
  const Json& obj = ev.object;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    // Not (yet) ours: remember finished objects, so a task adopting one
    // after a restart sees its result even if the event came first.
    if (ev.type != WatchEvent::Type::kDeleted) {
      const Operator* op = OperatorForResource(Operators(), plural);
      bool finished = plural == "pods" ? PodFinished(obj) : op && op->ReadStatus(obj).finished;
      if (finished) terminal_seen_[key] = obj;
    } else {
      terminal_seen_.erase(key);
    }
    return std::nullopt;
  }
  auto rit = running_.find(it->second);
  if (rit == running_.end() || rit->second->finishing) return std::nullopt;
  Live& r = *rit->second;
  if (ev.type == WatchEvent::Type::kDeleted) {
    // A bare pod the cluster removed (evicted, preempted, its node lost)
    // says why in its last state.
    const std::string why = IsBarePod(r.kind) ? k8s::ClusterEnded(obj) : "";
    QueueFinishLocked(r, Finish{r.task.id, TaskOutcome::kError,
                                r.kind.kind + " " + r.ns + "/" + r.name +
                                    (why.empty() ? " was deleted before it finished (by someone else, or "
                                                   "its namespace)"
                                                 : " was deleted by the cluster before it finished: " + why)});
    return r.task.id;
  }
  WorkloadState st = r.op->ReadStatus(obj);
  if (!st.finished) {
    TrackQueueLocked(r, obj);
    return std::nullopt;
  }
  TaskId id = r.task.id;
  if (st.outcome == TaskOutcome::kSucceeded) {
    SucceedLocked(r, st.message);
    return id;
  }
  Finish f{id, st.outcome, st.message};
  // A timeout deletes the object (and its pods).
  f.delete_object = st.outcome == TaskOutcome::kTimedOut;
  if (IsBarePod(r.kind)) f.pod = obj;  // its exit code is in this event
  QueueFinishLocked(r, std::move(f));
  return id;
}

void KubernetesExecutor::QueueFinishLocked(Live& r, Finish f) {
  r.finishing = true;
  // A delete sent before the create returns may find nothing; the create
  // then deletes what it made (CreateOrAdopt).
  if (f.delete_object && !r.created) delete_after_create_.insert(Key(r.kind.plural, r.ns, r.name));
  finish_queue_.push_back(std::move(f));
  finish_cv_.notify_one();
}

Status KubernetesExecutor::Start(const Task& task) {
  auto op = KubernetesOperator(Operators(), task.operator_type);
  if (!op) return op.error().WithContext("step \"" + task.step + "\"");
  KubernetesObjectOptions mo = options_.manifests;
  mo.namespace_ = NamespaceFor(task);
  auto manifest = (*op)->KubernetesObject(task, mo);
  if (!manifest) return manifest.error();
  std::optional<KubernetesKind> kind = (*op)->KindOf(*manifest);
  const bool any_kind = (*op)->Kind() && (*op)->Kind()->plural.empty();
  if (manifest->value("kind", "") == "Pod" && !any_kind) kind = BarePodKind(*kind);
  std::string name = (*manifest)["metadata"]["name"].get<std::string>();
  std::string key = Key(kind->plural, mo.namespace_, name);

  auto r = std::make_unique<Live>();
  r->task = task;
  r->op = *op;
  r->kind = *kind;
  r->ns = mo.namespace_;
  r->name = name;
  r->started_at = std::chrono::system_clock::now();
  r->any_kind = any_kind;
  r->queue = Label(*manifest, k8s::kLabelQueue);
  r->held = !r->queue.empty();
  if (!r->held) StartClocks(*r);
  const std::string path = kind->plural + "/" + mo.namespace_;
  bool async = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_.count(task.id)) {
      return Status::AlreadyExists("task " + std::to_string(task.id) + " is already running");
    }
    running_[task.id] = std::move(r);
    by_key_[key] = task.id;
    async = options_.async_create && created_ok_.count(path) > 0;
  }
  EnsureWatch(*kind, mo.namespace_, task.run_id);
  if (async) {
    std::lock_guard<std::mutex> lock(mu_);
    create_queue_.push_back(Create{task.id, *kind, mo.namespace_, key, std::move(*manifest)});
    create_cv_.notify_one();
    return Status::Ok();
  }
  Status st = CreateOrAdopt(task.id, *kind, mo.namespace_, key, *manifest);
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    created_ok_.insert(path);
    if (IsBarePod(*kind)) QueueCleanupLocked(mo.namespace_);
  }
  return st;
}

Status KubernetesExecutor::CreateOrAdopt(TaskId id, const KubernetesKind& kind,
                                         const std::string& ns, const std::string& key,
                                         const Json& manifest) {
  Task task;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = running_.find(id);
    if (it == running_.end() || it->second->finishing) {  // cancelled: nothing to create
      delete_after_create_.erase(key);
      return Status::Ok();
    }
    task = it->second->task;
  }
  const std::string name = manifest["metadata"]["name"].get<std::string>();
  auto forget = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(id);
    by_key_.erase(key);
    delete_after_create_.erase(key);
  };
  k8s::ResourceKind rk = ToResourceKind(kind);
  if (options_.on_create_request) options_.on_create_request(id);
  auto created = client_->Create(rk, ns, manifest);
  Json object;
  if (created) {
    object = std::move(*created);
  } else if (created.error().code() == StatusCode::kAlreadyExists) {
    // Adopt our own object (resume after a crash); refuse anyone else's.
    auto existing = client_->Get(rk, ns, name);
    if (!existing) {
      forget();
      return existing.error();
    }
    if (Label(*existing, "sluice.dev/run") != k8s::LabelValue(task.run_id) ||
        Annotation(*existing, "sluice.dev/instance") != task.instance ||
        Label(*existing, "sluice.dev/attempt") != std::to_string(task.attempt)) {
      forget();
      return Status::AlreadyExists(kind.kind + " " + ns + "/" + name +
                                   " exists but was not created by run " + task.run_id +
                                   " for " + task.instance + " attempt " +
                                   std::to_string(task.attempt) + "; delete it or rename the run");
    }
    spdlog::info("adopting existing {} {}/{} for {} attempt {}", kind.kind, ns, name,
                 task.instance, task.attempt);
    object = std::move(*existing);
  } else {
    forget();
    return MissingApi(kind, created.error());
  }

  // The object may already be finished (adopted), or its final event may
  // have arrived before we registered it, or while the create was in flight
  // (the watch then finished the task: its object stays); or the task was
  // cancelled or timed out while the create was in flight, and its delete
  // came too early: delete it now.
  bool delete_now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto seen = terminal_seen_.find(key);
    if (seen != terminal_seen_.end()) {
      object = seen->second;
      terminal_seen_.erase(seen);
    }
    delete_now = delete_after_create_.erase(key) > 0;
    auto rit = running_.find(id);
    if (rit != running_.end() && !rit->second->finishing) {
      rit->second->created = true;
      WorkloadState st = rit->second->op->ReadStatus(object);
      if (st.finished && st.outcome == TaskOutcome::kSucceeded) {
        SucceedLocked(*rit->second, st.message);
      } else if (st.finished) {
        Finish f{id, st.outcome, st.message};
        f.delete_object = st.outcome == TaskOutcome::kTimedOut;
        if (IsBarePod(kind)) f.pod = object;
        QueueFinishLocked(*rit->second, std::move(f));
      }
    }
  }
  if (delete_now) client_->Delete(rk, ns, name, k8s::Propagation::kBackground);
  return Status::Ok();
}

void KubernetesExecutor::CreatorLoop() {
  for (;;) {
    Create c;
    {
      std::unique_lock<std::mutex> lock(mu_);
      create_cv_.wait(lock, [&] { return shutting_down_ || !create_queue_.empty(); });
      if (shutting_down_) return;
      c = std::move(create_queue_.front());
      create_queue_.pop_front();
    }
    Status st = CreateOrAdopt(c.id, c.kind, c.ns, c.key, c.manifest);
    if (st.ok()) continue;
    // The task did not start: report it as a system error through Wait().
    TaskResult r;
    r.id = c.id;
    r.outcome = TaskOutcome::kError;
    r.message = st.message();
    r.started_at = r.finished_at = std::chrono::system_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(std::move(r));
    done_cv_.notify_all();
  }
}

std::optional<TaskResult> KubernetesExecutor::Wait(Duration timeout) {
  ReapIdleWatches();
  auto end = SteadyClock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!done_.empty()) {
      TaskResult r = std::move(done_.front());
      done_.pop_front();
      return r;
    }
    if (running_.empty()) return std::nullopt;
    // New notes go to the runner now, not with the next result (once: a
    // caller that never takes them is not woken again).
    if (notes_wake_) {
      notes_wake_ = false;
      return std::nullopt;
    }
    // sluice's own deadline, in case activeDeadlineSeconds never fires
    // (e.g. a pod that never starts on a cluster without a deadline).
    auto now = SteadyClock::now();
    std::optional<SteadyClock::time_point> next;
    for (auto& [id, r] : running_) {
      if (r->finishing || !r->deadline) continue;
      if (*r->deadline <= now) {
        Finish f{id, TaskOutcome::kTimedOut,
                 "timed out after " + std::to_string(r->task.timeout->count()) +
                     "ms (no result from the cluster within the timeout + " +
                     std::to_string(options_.deadline_grace.count()) + "ms grace)"};
        f.delete_object = true;
        QueueFinishLocked(*r, std::move(f));
      } else if (!next || *r->deadline < *next) {
        next = r->deadline;
      }
    }
    for (auto& [id, r] : running_) {
      if (r->finishing || r->probing || !r->pending_check) continue;
      if (*r->pending_check <= now) {
        r->probing = true;
        Finish probe;
        probe.id = id;
        probe.probe_pending = true;
        finish_queue_.push_back(std::move(probe));
        finish_cv_.notify_one();
      } else if (!next || *r->pending_check < *next) {
        next = r->pending_check;
      }
    }
    for (auto& [ns, p] : queue_probes_) {
      if (!p.due) continue;
      if (*p.due <= now) {
        p.due.reset();
        p.in_flight = true;
        Finish probe;
        probe.ns = ns;
        probe.probe_queue = true;
        finish_queue_.push_back(std::move(probe));
        finish_cv_.notify_one();
      } else if (!next || *p.due < *next) {
        next = p.due;
      }
    }
    if (now >= end) return std::nullopt;
    auto until = next ? std::min(end, *next) : end;
    done_cv_.wait_until(lock, until);
  }
}

void KubernetesExecutor::Cancel(TaskId id, Duration grace) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(id);
  if (it == running_.end() || it->second->finishing) return;
  Finish f{id, TaskOutcome::kCancelled, "cancelled"};
  f.delete_object = true;
  f.grace_seconds = std::max<int64_t>(0, grace.count() / 1000);
  QueueFinishLocked(*it->second, std::move(f));
}

void KubernetesExecutor::CancelAll(Duration grace) {
  std::vector<TaskId> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, r] : running_) ids.push_back(id);
  }
  for (TaskId id : ids) Cancel(id, grace);
}

void KubernetesExecutor::FinisherLoop() {
  for (;;) {
    Finish f;
    {
      std::unique_lock<std::mutex> lock(mu_);
      finish_cv_.wait(lock, [&] { return shutting_down_ || !finish_queue_.empty(); });
      // On shutdown, results nobody will read are dropped, but pending log
      // copies are still made (they are what outlives the pods).
      while (!finish_queue_.empty() && shutting_down_ && !finish_queue_.front().logs_only) {
        finish_queue_.pop_front();
      }
      if (finish_queue_.empty()) {
        if (shutting_down_) return;
        continue;
      }
      f = std::move(finish_queue_.front());
      finish_queue_.pop_front();
    }
    if (f.cleanup) {
      DeleteExpiredPods(f.ns);
    } else if (f.probe_pending) {
      ProbePending(f.id);
    } else if (f.logs_only && !f.log_note.empty()) {
      std::ofstream(f.log_path, std::ios::app) << f.log_note;
    } else if (f.probe_queue) {
      ProbeQueue(f.ns);
    } else if (f.logs_only) {
      // A success's log waits for an idle moment of the rate limiter, so
      // copying it never delays a create.
      auto pods = PodsOf(f.kind, f.ns, f.name, f.pod, k8s::Priority::kBackground);
      CopyLogs(f.kind, f.ns, f.name, f.log_path, f.log_masks, pods, k8s::Priority::kBackground);
    } else {
      Complete(std::move(f));
    }
  }
}

Result<k8s::ObjectList> KubernetesExecutor::PodsOf(const KubernetesKind& kind,
                                                  const std::string& ns, const std::string& name,
                                                  const std::optional<Json>& pod,
                                                  k8s::Priority priority) {
  // A bare pod is its own object: no list (its final state, when known, came
  // with the watch event; the log needs only its name).
  if (IsBarePod(kind)) {
    k8s::ObjectList one;
    one.items.push_back(pod ? *pod : Json{{"metadata", {{"name", name}}}});
    return one;
  }
  // An object of any kind (`type: resource`): its pods are its controller's
  // business, by labels sluice does not know.
  if (kind.pod_name_label.empty()) return k8s::ObjectList();
  return client_->List(k8s::PodKind(), ns, kind.pod_name_label + "=" + name, priority);
}

void KubernetesExecutor::CopyLogs(const KubernetesKind& kind, const std::string& ns,
                                  const std::string& name, const std::string& log_path,
                                  const std::vector<std::string>& log_masks,
                                  const Result<k8s::ObjectList>& pods, k8s::Priority priority) {
  if (!options_.fetch_logs || log_path.empty()) return;
  std::ofstream log(log_path, std::ios::app);
  if (!pods) {
    log << "[sluice] could not list the pods of " << kind.kind << " " << ns << "/" << name << ": "
        << pods.error().message() << "\n";
    return;
  }
  if (pods->items.empty() && kind.pod_name_label.empty()) {
    log << "[sluice] " << kind.kind << " " << ns << "/" << name
        << ": the pods of a resource step are its controller's; read their logs with kubectl logs\n";
    return;
  }
  if (pods->items.empty()) {
    log << "[sluice] " << kind.kind << " " << ns << "/" << name
        << " has no pods left to read logs from\n";
    return;
  }
  std::vector<const Json*> sorted;
  for (const auto& p : pods->items) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](const Json* a, const Json* b) {
    return (*a)["metadata"].value("name", "") < (*b)["metadata"].value("name", "");
  });
  for (const Json* pod : sorted) {
    std::string pod_name = (*pod)["metadata"].value("name", "");
    if (sorted.size() > 1) log << "==> pod " << pod_name << " <==\n";
    auto text = client_->GetText("/api/v1/namespaces/" + UrlEncode(ns) + "/pods/" +
                                     UrlEncode(pod_name) + "/log?container=" +
                                     UrlEncode(kind.container_name),
                                 /*max_retries=*/0, priority);
    if (text) {
      log << (log_masks.empty() ? *text : MaskValues(*text, log_masks, kLogMask));
      if (!text->empty() && text->back() != '\n') log << "\n";
    } else {
      log << "[sluice] could not fetch the logs of pod " << ns << "/" << pod_name << ": "
          << text.error().message() << "\n";
    }
  }
}

void KubernetesExecutor::Complete(Finish f) {
  Task task;
  KubernetesKind kind;
  std::string ns, name;
  std::chrono::system_clock::time_point started_at;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = running_.find(f.id);
    if (it == running_.end()) return;
    task = it->second->task;
    kind = it->second->kind;
    ns = it->second->ns;
    name = it->second->name;
    started_at = it->second->started_at;
  }
  k8s::ResourceKind rk = ToResourceKind(kind);
  TaskResult result;
  result.id = f.id;
  result.outcome = f.forced.value_or(TaskOutcome::kError);
  result.message = f.message;
  result.started_at = started_at;
  result.external_id = ns + "/" + name;

  // Delete first on cancel/timeout: stopping the pods matters more than logs.
  if (f.delete_object) {
    Status st = client_->Delete(rk, ns, name, k8s::Propagation::kBackground,
                                f.grace_seconds >= 0 ? std::optional<int64_t>(f.grace_seconds)
                                                     : std::nullopt);
    if (!st.ok()) {
      spdlog::warn("could not delete {} {}/{}: {}", kind.kind, ns, name, st.message());
      result.message += "; deleting " + kind.kind + " " + ns + "/" + name + " failed: " + st.message();
    }
  }

  // A failure's exit code and log are read before the result is returned,
  // so the engine can show them at once.
  auto pods = PodsOf(kind, ns, name, f.pod, k8s::Priority::kNormal);
  if (pods) {
    if (result.outcome == TaskOutcome::kSucceeded) {
      result.exit_code = 0;
    } else {
      k8s::PodExit exit = k8s::ExitFromPods(pods->items);
      result.exit_code = exit.exit_code;
      if (!exit.description.empty()) result.message += " (" + exit.description + ")";
      // A Job or TFJob fails the same way whether its container failed or
      // the cluster ended its pod; the pods tell which (a system error,
      // retried under retryOn: Error).
      if (result.outcome == TaskOutcome::kFailed) {
        for (const auto& p : pods->items) {
          const std::string why = k8s::ClusterEnded(p);
          if (why.empty()) continue;
          result.outcome = TaskOutcome::kError;
          result.message += "; pod " + p["metadata"].value("name", "") + " was ended by the cluster: " + why;
          break;
        }
      }
    }
  } else if (result.outcome == TaskOutcome::kSucceeded) {
    result.exit_code = 0;
  }
  CopyLogs(kind, ns, name, task.log_path, task.log_masks, pods, k8s::Priority::kNormal);

  result.finished_at = std::chrono::system_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  by_key_.erase(Key(kind.plural, ns, name));
  running_.erase(f.id);
  done_.push_back(std::move(result));
  done_cv_.notify_all();
}

void KubernetesExecutor::ProbePending(TaskId id) {
  KubernetesKind kind;
  std::string ns, name;
  Duration limit{0};
  std::optional<std::chrono::system_clock::time_point> admitted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = running_.find(id);
    if (it == running_.end() || it->second->finishing) return;
    kind = it->second->kind;
    ns = it->second->ns;
    name = it->second->name;
    limit = *it->second->task.pending_timeout;
    admitted = it->second->admitted_at;
  }
  // The pods as they are now: a bare pod by one GET, a Job's or a TFJob's by
  // one LIST.
  Result<k8s::ObjectList> pods = k8s::ObjectList();
  if (IsBarePod(kind)) {
    auto pod = client_->Get(k8s::PodKind(), ns, name);
    if (pod) pods->items.push_back(std::move(*pod));
    else if (pod.error().code() != StatusCode::kNotFound) pods = Error(pod.error());
  } else {
    pods = PodsOf(kind, ns, name, std::nullopt, k8s::Priority::kNormal);
  }
  const auto now = std::chrono::system_clock::now();
  std::optional<std::chrono::system_clock::time_point> next;
  std::string stuck;
  if (!pods || pods->items.empty()) {
    next = now + limit;  // unreadable, or no pod yet (its controller has not made it): ask again later
  } else {
    for (const auto& pod : pods->items) {
      const Json status = pod.value("status", Json::object());
      const std::string phase = status.is_object() ? status.value("phase", "") : "";
      if (!phase.empty() && phase != "Pending") continue;
      auto created = k8s::ParseRfc3339(pod["metadata"].value("creationTimestamp", ""));
      // A pod Kueue held (scheduling-gated) is Pending from its admission.
      auto since = created.value_or(now);
      if (admitted && *admitted > since) since = *admitted;
      if (now - since >= limit) {
        stuck = "pod " + ns + "/" + pod["metadata"].value("name", "") + " was still Pending after " +
                FormatDuration(limit) + " (pendingTimeout): " + PendingReason(pod);
        break;
      }
      if (!next || since + limit < *next) next = since + limit;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(id);
  if (it == running_.end() || it->second->finishing) return;
  Live& r = *it->second;
  r.probing = false;
  if (!stuck.empty()) {
    Finish f{id, TaskOutcome::kError, stuck};
    f.delete_object = true;
    QueueFinishLocked(r, std::move(f));
    return;
  }
  r.pending_check.reset();
  if (next) r.pending_check = SteadyClock::now() + std::chrono::ceil<Duration>(*next - now);
  done_cv_.notify_all();  // Wait() recomputes when to look next
}

void KubernetesExecutor::SucceedLocked(Live& r, const std::string& message) {
  // A success needs nothing from the pods: return it at once (this is the
  // completion -> successor path) and copy the logs in the background.
  TaskResult result;
  result.id = r.task.id;
  result.outcome = TaskOutcome::kSucceeded;
  result.exit_code = 0;
  result.message = message;
  result.started_at = r.started_at;
  result.finished_at = std::chrono::system_clock::now();
  result.external_id = r.ns + "/" + r.name;
  if (options_.fetch_logs && !r.task.log_path.empty()) {
    // The log file is written on a finisher thread, never under mu_.
    Finish logs;
    logs.id = r.task.id;
    logs.logs_only = true;
    logs.kind = r.kind;
    logs.ns = r.ns;
    logs.name = r.name;
    logs.log_path = r.task.log_path;
    logs.log_masks = r.task.log_masks;
    if (!CopiesSuccessLog(r.task)) {
      logs.log_note =
          "[sluice] kubernetes.logs is failed: this step's log was not copied; while its pods "
          "exist: kubectl logs -n " + r.ns + " -c " + r.kind.container_name + " " +
          (IsBarePod(r.kind) ? "pod/" + r.name : "-l " + r.kind.pod_name_label + "=" + r.name) +
          "\n";
    }
    finish_queue_.push_back(std::move(logs));
    finish_cv_.notify_one();
  }
  TaskId id = r.task.id;
  by_key_.erase(Key(r.kind.plural, r.ns, r.name));
  running_.erase(id);  // destroys r
  done_.push_back(std::move(result));
  done_cv_.notify_all();
}

void KubernetesExecutor::QueueCleanupLocked(const std::string& ns) {
  if (!cleaned_.insert(ns).second) return;
  Finish f;
  f.cleanup = true;
  f.ns = ns;
  finish_queue_.push_back(std::move(f));
  finish_cv_.notify_one();
}

namespace {

// When a finished bare pod may be deleted: its main containers' (else its
// conditions') latest time plus its TTL annotation; nullopt without a TTL or
// a time.
std::optional<std::chrono::system_clock::time_point> ExpiresAt(const Json& pod) {
  const std::string ttl = Annotation(pod, k8s::kAnnotationTtl);
  if (ttl.empty() || ttl.find_first_not_of("0123456789") != std::string::npos || ttl.size() > 12) {
    return std::nullopt;
  }
  std::optional<std::chrono::system_clock::time_point> last;
  auto consider = [&](const Json& holder, const char* field) {
    if (!holder.is_object() || !holder.contains(field) || !holder[field].is_string()) return;
    auto t = k8s::ParseRfc3339(holder[field].get<std::string>());
    if (t && (!last || *t > *last)) last = t;
  };
  if (!pod.contains("status") || !pod["status"].is_object()) return std::nullopt;
  const Json& status = pod["status"];
  if (status.contains("containerStatuses")) {
    for (const auto& cs : status["containerStatuses"]) {
      if (cs.contains("state")) consider(cs["state"].value("terminated", Json::object()), "finishedAt");
    }
  }
  if (!last && status.contains("conditions")) {
    for (const auto& c : status["conditions"]) consider(c, "lastTransitionTime");
  }
  if (!last) return std::nullopt;
  return *last + std::chrono::seconds(std::stoll(ttl));
}

}  // namespace

void KubernetesExecutor::DeleteExpiredPods(const std::string& ns) {
  auto pods = client_->List(k8s::PodKind(), ns, k8s::BarePodSelector(""));
  if (!pods) {
    spdlog::warn("could not list the finished pods in namespace {} to delete the expired ones: {}", ns,
                 pods.error().message());
    return;
  }
  std::set<std::string> active;  // run label values
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, r] : running_) active.insert(k8s::LabelValue(r->task.run_id));
  }
  // A run's pods go together, once the last of them has expired.
  std::map<std::string, bool> expired;  // run label value -> all its pods expired
  const auto now = std::chrono::system_clock::now();
  for (const auto& pod : pods->items) {
    const std::string run = Label(pod, k8s::kLabelRun);
    if (run.empty()) continue;
    auto at = PodFinished(pod) ? ExpiresAt(pod) : std::nullopt;
    bool done = at && *at <= now;
    auto [it, fresh] = expired.emplace(run, done);
    if (!fresh) it->second = it->second && done;
  }
  for (const auto& [run, all] : expired) {
    if (!all || active.count(run)) continue;
    const std::string selector = std::string(k8s::kLabelRun) + "=" + run + "," + k8s::kLabelObject + "=pod";
    Status st = client_->DeleteCollection(k8s::PodKind(), ns, selector, k8s::Propagation::kBackground);
    if (!st.ok()) spdlog::warn("could not delete the expired pods of run {} in {}: {}", run, ns, st.message());
  }
}

void KubernetesExecutor::ReapIdleWatches() {
  std::vector<std::unique_ptr<WatchEntry>> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> active_runs;
    for (const auto& [id, r] : running_) active_runs.insert(r->task.run_id);
    auto now = SteadyClock::now();
    for (auto it = watches_.begin(); it != watches_.end();) {
      if (!active_runs.count(it->second->run_id) &&
          now - it->second->last_used > std::chrono::minutes(10)) {
        idle.push_back(std::move(it->second));
        it = watches_.erase(it);
      } else {
        if (active_runs.count(it->second->run_id)) it->second->last_used = now;
        ++it;
      }
    }
  }
  idle.clear();  // joins outside the lock
}

Result<ExecutorPtr> NewKubernetesExecutor(const KubernetesExecutorOptions& options) {
  auto config = k8s::LoadRestConfig(options.kubeconfig);
  if (!config) return Error(config.error());
  auto client = k8s::Client::Create(*config, options.client);
  if (!client) return Error(client.error());
  return ExecutorPtr(new KubernetesExecutor(std::move(*client), options));
}

Result<std::vector<Json>> KubernetesDryRun(const Task& task,
                                           const KubernetesExecutorOptions& options) {
  auto op = KubernetesOperator(OperatorRegistry::OrGlobal(options.operators), task.operator_type);
  if (!op) return Error(op.error().WithContext("step \"" + task.step + "\""));
  KubernetesObjectOptions mo = options.manifests;
  if (mo.namespace_.empty()) {
    // The kubeconfig's namespace when there is one; a dry run must work
    // without a cluster, so a missing kubeconfig is not an error.
    auto config = k8s::LoadRestConfig(options.kubeconfig);
    mo.namespace_ = config ? config->namespace_ : "default";
  }
  auto m = (*op)->KubernetesObject(task, mo);
  if (!m) return Error(m.error());
  return std::vector<Json>{std::move(*m)};
}

}  // namespace sluice
