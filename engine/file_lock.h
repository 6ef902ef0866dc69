#pragma once
// Advisory locks on files that tell whether a process is still alive, robust
// against pid reuse and reboots: the kernel releases the lock however its
// holder ends (exit, crash, kill -9), and no stale pid is ever compared.
//
// The locks are Linux open-file-description (OFD) locks: they belong to the
// open file description, so a child that inherits the descriptor shares the
// lock, and closing some other descriptor of the same file in the same
// process does not drop it (unlike classic POSIX record locks).

#include <memory>
#include <optional>
#include <string>

#include "engine/status.h"

namespace sluice {

// Opens `path` for locking, creating it (mode 0644) when missing, with
// FD_CLOEXEC set. The caller owns the descriptor. Errors: Internal (with the
// path and the errno text).
Result<int> OpenLockFile(const std::string& path);

// Takes the exclusive lock on `fd` without waiting: true when taken (or
// already held through this open file description), false when another
// open file description holds it. Errors: Internal.
Result<bool> TryLockExclusive(int fd);

// Whether some open file description holds a lock on `path`, without taking
// one: false when the file does not exist. Errors: Internal.
Result<bool> IsLockHeld(const std::string& path);

// <state_dir>/runs/<run_id>/driver.lock: locked by the one process that
// drives the run (sluice run/resume/rerun, or sluice serve), for as long as
// it drives it.
std::string RunDriverLockPath(const std::string& state_dir, const std::string& run_id);

// The lock of a run's driver, released when destroyed (or when its process
// ends, however it ends).
class RunDriverLock {
 public:
  // Takes the run's lock (creating runs/<run_id>/), and writes this
  // process's pid into the file for messages. FailedPrecondition when
  // another process drives the run ("run R is still driven by sluice process
  // 1234; wait for it to end, or stop it with `sluice cancel R`");
  // Internal when the file cannot be created or locked.
  static Result<std::unique_ptr<RunDriverLock>> Acquire(const std::string& state_dir,
                                                        const std::string& run_id);
  ~RunDriverLock();
  RunDriverLock(const RunDriverLock&) = delete;
  RunDriverLock& operator=(const RunDriverLock&) = delete;

 private:
  explicit RunDriverLock(int fd) : fd_(fd) {}
  int fd_;
};

// Whether a process drives the run now: nullopt when the run has no lock
// file (it was never driven by a sluice that keeps one), else whether its
// lock is held. Errors: Internal.
Result<std::optional<bool>> IsRunDriven(const std::string& state_dir, const std::string& run_id);

}  // namespace sluice
