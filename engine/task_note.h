#pragma once
// What an executor can tell about a task that is running but not yet doing
// its work: a step waiting in a cluster's queue (Kueue) shows it in its
// record until it leaves the queue.

#include <string>
#include <vector>

#include "engine/executor.h"

namespace sluice {

// A running task's state for its step's record: `text` is "queued in team-a
// (Kueue: pending admission, position 2)" while the cluster holds the task
// in a queue, and "" once the task has left the queue and runs.
struct TaskNote {
  TaskId id = 0;
  std::string text;
};

// The prefix of a TaskNote's text while the task waits in a queue; `sluice
// status` shows such a running step as Queued.
inline constexpr char kQueuedNotePrefix[] = "queued in ";

// Implemented, beside Executor, by an executor whose tasks can wait in a
// queue after Start(); the runner finds it with dynamic_cast.
class TaskNoteSource {
 public:
  virtual ~TaskNoteSource() = default;
  // The notes gathered since the last call, at most one per task (the
  // latest). Called from the thread that drives the executor. A note that a
  // task left its queue is given after every result that came before it:
  // Wait() returns (nullopt) once a note is waiting, after any result.
  virtual std::vector<TaskNote> TakeNotes() = 0;
};

}  // namespace sluice
