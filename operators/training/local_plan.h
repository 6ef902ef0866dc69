#pragma once
// Replica planning for the local executor: turns one Task into the processes
// to start and the rule that says when the task has succeeded.
//
// A `container` task is one process. A `tfjob` or `pytorchjob` task is one
// process per replica, with the environment contract the Kubeflow
// training-operator sets in each pod, so a distributed training script runs
// unchanged on a laptop and on a cluster.
//
// The operator config (Task::config) is the step's `tfjob:` / `pytorchjob:`
// section as JSON. Either the section itself or an object holding it under its
// own key ({"tfjob": {...}}) is accepted. Shape (close to Kubeflow's
// tfReplicaSpecs / pytorchReplicaSpecs; "tfReplicaSpecs" and
// "pytorchReplicaSpecs" are accepted as aliases of "replicas"):
//
//   tfjob:
//     replicas:                     # replica type -> spec; at least one
//       Chief:  {replicas: 1}       # types: Chief, Master, Worker, PS, Evaluator
//       Worker: {replicas: 2, command: [python3, worker.py], env: {K: V}}
//       PS:     {replicas: 1}
//     successPolicy: ""             # "" (default) or AllWorkers
//
//   pytorchjob:
//     replicas:
//       Master: {replicas: 1}       # types: Master, Worker
//       Worker: {replicas: 2}
//     nprocPerNode: 1               # int, or a string ("auto", "4"); default 1
//
// Per replica spec: `replicas` (int >= 0, default 1), `command` (argv list,
// optional; default: the step's command), `env` (string map, optional; added
// over the step's env). Type names are matched case-insensitively. Other keys
// (runPolicy, elasticPolicy, image, ...) are for the Kubernetes executor and
// are ignored here.
//
// Environment per process (addresses are 127.0.0.1 with free ports):
//   tfjob:      TF_CONFIG = {"cluster": {"chief": ["127.0.0.1:p"], "worker":
//               [...], "ps": [...]}, "task": {"type": "worker", "index": 1},
//               "environment": "cloud"} (lower-case types; evaluators are not
//               in "cluster", as with the training-operator).
//   pytorchjob: MASTER_ADDR, MASTER_PORT, WORLD_SIZE (= replicas * nprocPerNode),
//               RANK (master 0, worker i -> i + 1; worker i -> i when there is
//               no Master), PET_MASTER_ADDR, PET_MASTER_PORT, PET_NNODES,
//               PET_NODE_RANK, PET_NPROC_PER_NODE.
//   all:        SLUICE_REPLICA_TYPE, SLUICE_REPLICA_INDEX.
//
// Success (the training-operator's successPolicy semantics):
//   tfjob:      the Chief (or Master) succeeds; without one, worker 0 succeeds
//               (successPolicy AllWorkers: every worker succeeds).
//   pytorchjob: the Master succeeds; without one, every worker succeeds.
//   Any replica exiting non-zero fails the task. Replicas still running when
//   the outcome is known (parameter servers, evaluators) are stopped.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/operator.h"
#include "engine/status.h"

namespace sluice::local {

// The engine's types under the names this header has always used.
using ReplicaLaunch = LocalProcess;
using TaskPlan = LocalPlan;
using PortAllocator = sluice::PortAllocator;

// The tfjob replicas of `task` (the training operator's local plan). Errors:
// kInvalidArgument naming the key; `error_path` (when not null) is set to the
// offending value's path below the config section.
Result<TaskPlan> PlanTfJob(const Task& task, const PortAllocator& ports,
                           std::vector<std::string>* error_path = nullptr);
// The pytorchjob replicas of `task`; errors as PlanTfJob.
Result<TaskPlan> PlanPyTorchJob(const Task& task, const PortAllocator& ports,
                                std::vector<std::string>* error_path = nullptr);

// Plans `task` with the operator of task.operator_type in
// OperatorRegistry::Global(): one replica for "container", the replicas of
// the config for "tfjob" / "pytorchjob". Ports come from `ports`. Errors: InvalidArgument for
// an unknown operator type, a malformed config or an empty command (the message
// names the offending key); whatever `ports` returns.
Result<TaskPlan> PlanTask(const Task& task, const PortAllocator& ports);

}  // namespace sluice::local
