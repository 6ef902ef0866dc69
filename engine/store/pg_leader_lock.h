#pragma once
// PgLeaderLock: leader election for `sluice serve` replicas that share a
// PostgreSQL store without Kubernetes. The leader is the replica whose own
// database session holds the session-level advisory lock `key`
// (pg_try_advisory_lock). The server releases the lock when that session
// ends, so when the leader's process dies (even by kill -9, which closes its
// socket) or its connection breaks, the next TryAcquire of a standby
// succeeds.
//
// Usage: each replica creates one and calls TryAcquire every retry period;
// the one for which it returns true schedules, and keeps calling it (a true
// again confirms it still holds the lock; a false means it lost it and must
// stop scheduling). Not thread-safe: one thread drives it.

#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"

struct pg_conn;

namespace sluice {

class PgLeaderLock {
 public:
  // The lock key replicas of `sluice serve` use unless told otherwise.
  static constexpr int64_t kDefaultKey = 0x736c756963656c64;  // "sluiceld"

  // Opens the lock's own session to `url` (a PostgreSQL URL, as OpenStore
  // takes). Errors: kUnavailable (server unreachable; the message masks
  // the password).
  static Result<std::unique_ptr<PgLeaderLock>> Connect(const std::string& url, int64_t key = kDefaultKey);

  ~PgLeaderLock();  // closes the session, which releases the lock
  PgLeaderLock(const PgLeaderLock&) = delete;
  PgLeaderLock& operator=(const PgLeaderLock&) = delete;

  // Takes the lock if no other session holds it, or confirms this session
  // still holds it: true = this replica leads. A broken session is
  // reconnected first (and no longer holds the lock: another replica may
  // have taken it). Errors: kUnavailable (server unreachable; held() is
  // then false).
  Result<bool> TryAcquire();

  // Whether the last TryAcquire found this session holding the lock.
  bool held() const { return held_; }

  // Gives the lock up (pg_advisory_unlock) and keeps the session.
  Status Release();

 private:
  PgLeaderLock(pg_conn* conn, std::string url, int64_t key);
  Status Reconnect();

  pg_conn* conn_;
  const std::string url_;
  const int64_t key_;
  bool held_ = false;
};

}  // namespace sluice
