#pragma once
// The Kubernetes executor: runs each task as one Kubernetes object (a bare
// Pod or a Job for a container step, a TFJob or a PyTorchJob), built by its
// step type's Operator (engine/operator.h), and learns how it ended from
// watch events, never by polling.
//
//   Start()   builds the manifest and creates it (one POST; asynchronous once
//             a create of that kind in that namespace has succeeded, see
//             KubernetesExecutorOptions::async_create). The name is
//             deterministic (run, instance, attempt): when it already exists
//             and carries this run's labels and this instance's annotation,
//             the executor adopts it instead of failing, so `sluice resume`
//             after a kill -9 creates no duplicates and picks up results that
//             finished meanwhile.
//   watches   one list+watch per (kind, namespace, run), label-selected with
//             sluice.dev/run (bare pods: and sluice.dev/object=pod), shared by
//             all of the run's tasks; started on the first Start() of that
//             run and closed after 10 idle minutes.
//   Wait()    returns results as watch events (or timeouts) arrive. A success
//             is returned as soon as its event arrives, and its pods' logs are
//             copied into Task::log_path right after, in the background (so
//             they outlive pod garbage collection; the destructor finishes
//             pending copies). For any other outcome the failing container's
//             exit code and the logs are read before the result is returned:
//             a bare pod's exit code comes with its final watch event, a
//             Job's from a list of its pods.
//   cleanup   bare pods have no ttlSecondsAfterFinished: the first create of
//             bare pods in a namespace queues DeleteExpiredPods() for it.
//   timeouts  the object carries activeDeadlineSeconds; when the API reports
//             DeadlineExceeded (or Task::timeout + deadline_grace passes
//             without an answer), the object is deleted with Background
//             propagation and the result is kTimedOut.
//   Cancel()  deletes the object (Background propagation, pods get `grace`),
//             and the result is kCancelled.
//   queues    an object with a Kueue LocalQueue (`kubernetes.queue`) is held
//             until Kueue admits it (a Job suspended, a pod behind Kueue's
//             scheduling gate, as its watch events show). While held, its
//             timeout and pendingTimeout do not run (they count from
//             admission), and TakeNotes() reports "queued in Q (Kueue: ...)"
//             (k8s::KueueQueueNote) from one LIST of the namespace's Workloads
//             at most every kQueueProbeInterval, shared by all held tasks
//             of that namespace; on admission the note is "".
//
// Write requests per task: 1 (create); plus 1 delete on timeout/cancel.
// Per namespace with tasks held by Kueue: 1 Workload LIST per
// kQueueProbeInterval, none once no task there is held.
// Reads per task: a bare pod 1 log GET; a Job or TFJob 1 pod list + 1 log
// GET per pod, on completion. Per run and namespace with bare pods: 1 list,
// plus 1 delete-collection per run whose pods expired.
//
// Thread-safety: as engine/executor.h: Start/Wait from one thread, Cancel and
// CancelAll from any.

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/executor.h"
#include "engine/status.h"
#include "engine/operator.h"
#include "engine/task_note.h"
#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"

namespace sluice {


struct KubernetesExecutorOptions {
  k8s::KubeconfigOptions kubeconfig;   // --kubeconfig, --context, --namespace
  k8s::ClientOptions client;           // qps/burst, retries
  // Namespace "" = the pipeline's, else the kubeconfig context's.
  KubernetesObjectOptions manifests;
  int max_in_flight = 0;               // tasks at once (CanRunMore); 0 = unlimited
  bool fetch_logs = true;              // copy pod logs into Task::log_path on completion
  // A task with a timeout that has not finished this long after its timeout
  // is deleted and reported kTimedOut by sluice itself (a backstop for
  // activeDeadlineSeconds, which counts from the pod's start).
  Duration deadline_grace{30000};
  int finisher_threads = 4;            // log/pod fetchers
  // After the first create of a kind in a namespace succeeded (so RBAC,
  // connectivity and the API are known good), Start() returns once the
  // manifest is built and the create runs on one of `creator_threads`; a
  // create that then fails comes back from Wait() as kError with the same
  // message. This keeps a slow API server from serialising the engine's
  // starts (completion -> successor latency). false: every create is
  // synchronous.
  bool async_create = true;
  int creator_threads = 8;
  // Called (on a watch thread, without locks held) when the watch delivers
  // the final status of a task's object; for benchmarks of completion ->
  // successor latency. May be empty.
  // `at` is when the event arrived, before any processing.
  std::function<void(TaskId, std::chrono::steady_clock::time_point at)> on_terminal_event;
  // Called just before a task's create request is sent (any thread).
  std::function<void(TaskId)> on_create_request;
  // The step types, which build the objects and read their status; null =
  // OperatorRegistry::Global(). Borrowed: it must outlive the executor.
  const OperatorRegistry* operators = nullptr;
};

class KubernetesExecutor : public Executor, public TaskNoteSource {
 public:
  // Use NewKubernetesExecutor(). Takes ownership of `client`.
  KubernetesExecutor(std::unique_ptr<k8s::Client> client, KubernetesExecutorOptions options);
  // Stops watches and finisher threads; leaves objects on the cluster (a
  // later `sluice resume` adopts them).
  ~KubernetesExecutor() override;
  KubernetesExecutor(const KubernetesExecutor&) = delete;
  KubernetesExecutor& operator=(const KubernetesExecutor&) = delete;

  std::string Name() const override { return "kubernetes"; }
  // True: objects have deterministic names and are adopted (CreateOrAdopt).
  bool AdoptsStartedAttempts() const override { return true; }
  bool CanRunMore() const override;
  // Errors: kInvalidArgument (no image, bad config), the API's errors
  // (forbidden, unreachable, CRD missing: "the cluster has no
  // kubeflow.org/v1 TFJob API (is the training-operator installed?)"),
  // kAlreadyExists when the name is taken by an object that is not this
  // task's.
  Status Start(const Task& task) override;
  std::optional<TaskResult> Wait(Duration timeout) override;
  void Cancel(TaskId id, Duration grace) override;
  void CancelAll(Duration grace) override;
  size_t Running() const override;
  // Queue notes (see "queues" above), the latest per task.
  std::vector<TaskNote> TakeNotes() override;

  // How often the Workloads of a namespace with held tasks are listed, and
  // how long after a task is first seen held (Kueue makes its Workload then).
  static constexpr Duration kQueueProbeInterval{5000};
  static constexpr Duration kQueueProbeDelay{1000};

  // The namespace `task` runs in.
  std::string NamespaceFor(const Task& task) const;
  // options.operators, else OperatorRegistry::Global().
  const OperatorRegistry& Operators() const { return OperatorRegistry::OrGlobal(options_.operators); }
  k8s::Client* client() { return client_.get(); }

 private:
  struct Live;  // a started task
  // Work for a finisher thread: produce a task's result (reading its pods),
  // or, with logs_only, copy the logs of a task already returned.
  struct Finish {
    TaskId id = 0;
    std::optional<TaskOutcome> forced;  // the outcome; nullopt = kError
    std::string message;
    bool delete_object = false;
    int64_t grace_seconds = -1;
    bool logs_only = false;
    KubernetesKind kind;  // logs_only: where the pods are
    std::string ns, name, log_path;
    std::vector<std::string> log_masks;  // Task::log_masks
    std::string log_note;  // logs_only: append this line instead of copying the log
    std::optional<Json> pod;  // a bare pod's final state, from its watch event
    bool cleanup = false;     // delete the expired bare pods of namespace `ns`
    bool probe_pending = false;  // look whether task `id`'s pods are Pending too long
    bool probe_queue = false;    // list namespace `ns`'s Workloads for its held tasks
  };
  // The Workload LIST of one namespace (queue notes).
  struct QueueProbe {
    std::optional<std::chrono::steady_clock::time_point> due;  // nullopt: none scheduled
    bool in_flight = false;
    std::chrono::steady_clock::time_point last{};
  };
  struct WatchEntry;

  void EnsureWatch(const KubernetesKind& kind, const std::string& ns,
                   const std::string& run_id);
  void OnEvent(const std::string& kind, const k8s::WatchEvent& ev);
  // The body of OnEvent, with mu_ held; returns the task whose final status
  // this event carried.
  std::optional<TaskId> OnEventLocked(const std::string& plural, const std::string& key,
                                      const k8s::WatchEvent& ev);
  // Called with mu_ held: queues `f` for a finisher thread.
  void QueueFinishLocked(Live& r, Finish f);
  // A create to send on a creator thread.
  struct Create {
    TaskId id = 0;
    KubernetesKind kind;
    std::string ns, key;
    Json manifest;
  };
  // POSTs the manifest, adopting our own existing object; registers a
  // finished object's result. Errors as Start()'s.
  Status CreateOrAdopt(TaskId id, const KubernetesKind& kind, const std::string& ns,
                       const std::string& key, const Json& manifest);
  void CreatorLoop();
  void FinisherLoop();
  void Complete(Finish f);
  // With mu_ held: returns a success at once and queues its log copy (with
  // `kubernetes.logs: failed`, writes where the log is instead).
  void SucceedLocked(Live& r, const std::string& message);
  // The pods of object `name`: a Job's or a TFJob's by one LIST; a bare
  // pod is its own, `pod` when its final state is known, else its name.
  Result<k8s::ObjectList> PodsOf(const KubernetesKind& kind, const std::string& ns,
                                 const std::string& name, const std::optional<Json>& pod,
                                 k8s::Priority priority);
  // Appends the logs of `pods` (one GET of pods/log each), or why there are
  // none, to `log_path`.
  void CopyLogs(const KubernetesKind& kind, const std::string& ns,
                const std::string& name, const std::string& log_path,
                const std::vector<std::string>& log_masks, const Result<k8s::ObjectList>& pods,
                k8s::Priority priority);
  // With mu_ held: queues DeleteExpiredPods(ns) once per namespace.
  void QueueCleanupLocked(const std::string& ns);
  // Bare pods have no TTL controller: deletes, with one DELETECOLLECTION per
  // run, the bare pods of every run in `ns` that is not running here and
  // whose pods have all finished more than their TTL ago (annotation
  // sluice.dev/ttl-seconds-after-finished). One LIST of the namespace's bare
  // pods. Failures are logged, never returned.
  void DeleteExpiredPods(const std::string& ns);
  void ReapIdleWatches();
  // Task::pending_timeout: reads task `id`'s pods (one GET or LIST); a pod
  // Pending longer than the timeout (since its creation, or its admission by
  // Kueue when later) fails the task as
  // kError with the pod's reason, and deletes its object; otherwise sets
  // when to look again (never, once every pod has started).
  void ProbePending(TaskId id);
  // Sets `r`'s deadline and pending check, counting from now (its start,
  // or its admission by Kueue).
  void StartClocks(Live& r) const;
  // With mu_ held: follows a non-final event of a queued task's object
  // (held -> admitted starts its clocks; held schedules a queue probe).
  void TrackQueueLocked(Live& r, const Json& obj);
  // With mu_ held: records `text` as task r's note when it changed.
  void NoteLocked(Live& r, std::string text);
  // With mu_ held: schedules a Workload LIST of `ns` (at most one per
  // kQueueProbeInterval).
  void QueueProbeLocked(const std::string& ns);
  // Lists `ns`'s Workloads and notes each held task's place in its queue.
  void ProbeQueue(const std::string& ns);

  std::unique_ptr<k8s::Client> client_;
  const KubernetesExecutorOptions options_;

  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  std::condition_variable finish_cv_;
  std::map<TaskId, std::unique_ptr<Live>> running_;
  std::map<std::string, TaskId> by_key_;          // "plural/ns/name" -> task
  std::map<std::string, Json> terminal_seen_;     // finished objects seen before their task
  std::set<std::string> delete_after_create_;     // cancelled/timed out while being created
  std::deque<TaskResult> done_;
  std::deque<Finish> finish_queue_;
  std::deque<Create> create_queue_;
  std::condition_variable create_cv_;
  std::set<std::string> created_ok_;  // "plural/ns" that accepted a create
  std::set<std::string> cleaned_;     // namespaces whose expired bare pods were queued for deletion
  std::map<std::string, std::unique_ptr<WatchEntry>> watches_;  // "plural/ns/run"
  std::map<TaskId, TaskNote> notes_;                // not yet taken
  bool notes_wake_ = false;                         // a note came since Wait() last returned for one
  std::map<std::string, QueueProbe> queue_probes_;  // by namespace
  bool shutting_down_ = false;
  std::vector<std::thread> finishers_;
};

// Connects (reads kubeconfig, builds the client) and returns the executor.
// Errors are LoadRestConfig's and Client::Create's; nothing is sent to the
// API server until the first Start().
Result<ExecutorPtr> NewKubernetesExecutor(const KubernetesExecutorOptions& options);

// The manifest(s) Start() would create for `task`, without contacting the
// cluster (`sluice run --dry-run --executor kubernetes`). `namespace_` ""
// uses options.manifests.namespace_, then "default".
Result<std::vector<Json>> KubernetesDryRun(const Task& task,
                                           const KubernetesExecutorOptions& options);

// Registers NewKubernetesExecutor(options) as "kubernetes". Defined in
// register.cc.
Status RegisterKubernetesExecutor(ExecutorRegistry& registry,
                                  const KubernetesExecutorOptions& options);

}  // namespace sluice
