#include "engine/store/pg_leader_lock.h"

#include <libpq-fe.h>

#include <string>

#include "engine/store/open_store.h"

namespace sluice {

namespace {

PGconn* ConnectSession(const std::string& url) {
  const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {"10", "sluice-leader", url.c_str(), nullptr};
  return PQconnectdbParams(keys, values, /*expand_dbname=*/1);
}

Status SessionError(PGconn* conn, const std::string& url, const std::string& what) {
  std::string msg = conn ? PQerrorMessage(conn) : "out of memory";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return Status::Unavailable(what + " " + MaskStoreUrl(url) + ": " + MaskStoreSecrets(msg, url));
}

}  // namespace

PgLeaderLock::PgLeaderLock(pg_conn* conn, std::string url, int64_t key)
    : conn_(conn), url_(std::move(url)), key_(key) {}

PgLeaderLock::~PgLeaderLock() { PQfinish(conn_); }

Result<std::unique_ptr<PgLeaderLock>> PgLeaderLock::Connect(const std::string& url, int64_t key) {
  PGconn* conn = ConnectSession(url);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    Status err = SessionError(conn, url, "cannot connect the leader lock to");
    PQfinish(conn);
    return Error(err);
  }
  return std::unique_ptr<PgLeaderLock>(new PgLeaderLock(conn, url, key));
}

Status PgLeaderLock::Reconnect() {
  held_ = false;
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) return SessionError(conn_, url_, "lost the leader lock's session to");
  return Status::Ok();
}

Result<bool> PgLeaderLock::TryAcquire() {
  if (PQstatus(conn_) != CONNECTION_OK) SLUICE_RETURN_IF_ERROR_RESULT(Reconnect());
  // Taking a session lock this session holds already stacks it; ask first
  // whether it is ours, so that the count stays one.
  const std::string key = std::to_string(key_);
  const char* params[] = {key.c_str()};
  for (int attempt = 0;; ++attempt) {
    PGresult* r = PQexecParams(conn_,
                               "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                               "AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                               "AND ((classid::bigint << 32) | objid::bigint) = $1::bigint) "
                               "THEN true ELSE pg_try_advisory_lock($1::bigint) END",
                               1, nullptr, params, nullptr, nullptr, 0);
    if (r != nullptr && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      held_ = PQgetvalue(r, 0, 0)[0] == 't';
      PQclear(r);
      return held_;
    }
    PQclear(r);
    held_ = false;
    // The session died under us (the server restarted, the network broke):
    // reconnect once and ask again.
    if (PQstatus(conn_) == CONNECTION_OK || attempt > 0)
      return Error(SessionError(conn_, url_, "taking the leader lock on"));
    SLUICE_RETURN_IF_ERROR_RESULT(Reconnect());
  }
}

Status PgLeaderLock::Release() {
  if (!held_) return Status::Ok();
  held_ = false;
  const std::string key = std::to_string(key_);
  const char* params[] = {key.c_str()};
  PGresult* r = PQexecParams(conn_, "SELECT pg_advisory_unlock($1::bigint)", 1, nullptr, params, nullptr, nullptr, 0);
  const bool ok = r != nullptr && PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  if (!ok) return SessionError(conn_, url_, "releasing the leader lock on");
  return Status::Ok();
}

}  // namespace sluice
