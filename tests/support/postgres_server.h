// Test support: the PostgreSQL server that the CTest fixture "postgres"
// starts (tests/engine/postgres/postgres-server, tests/engine/CMakeLists.txt),
// and a database of a test's own on it.
//
// The server's URL comes from SLUICE_TEST_POSTGRES_URL in the environment
// (a server of your own), else from <state>/env, which the fixture writes.

#pragma once

#include <libpq-fe.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tests/support/s3_server.h"  // S3ServerEnv reads any <state>/env

namespace sluice::testutil {

// The URL of the test server's "postgres" database (with its password), or
// "" when no server was started.
inline std::string PostgresTestUrl(const std::string& state) {
  if (const char* url = std::getenv("SLUICE_TEST_POSTGRES_URL"); url && *url) return url;
  auto env = S3ServerEnv(state);
  auto it = env.find("SLUICE_TEST_POSTGRES_URL");
  return it == env.end() ? "" : it->second;
}

// Why the PostgreSQL tests skip when PostgresTestUrl is "".
inline std::string NoPostgresReason(const std::string& state) {
  return "no PostgreSQL server: " + state +
         "/env is missing (the CTest fixture postgres_server_up did not start one; run the tests through "
         "ctest, install Debian's postgresql, or set SLUICE_TEST_POSTGRES_URL)";
}

// `url` with its database name replaced by `database`.
inline std::string WithDatabase(const std::string& url, const std::string& database) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t slash = url.find('/', start);
  size_t query = url.find('?', start);
  if (slash == std::string::npos || (query != std::string::npos && query < slash)) {
    size_t at = query == std::string::npos ? url.size() : query;
    return url.substr(0, at) + "/" + database + url.substr(at);
  }
  size_t end = query == std::string::npos ? url.size() : query;
  return url.substr(0, slash + 1) + database + url.substr(end);
}

// Runs `sql` on a new connection to `url`; the first column of each row,
// or the error's message as the only element after "ERROR: ".
inline std::vector<std::string> PgQuery(const std::string& url, const std::string& sql) {
  std::vector<std::string> out;
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    out.push_back(std::string("ERROR: ") + PQerrorMessage(conn));
    PQfinish(conn);
    return out;
  }
  PGresult* r = PQexec(conn, sql.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) out.push_back(PQgetvalue(r, i, 0));
  } else if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    out.push_back(std::string("ERROR: ") + PQresultErrorMessage(r));
  }
  PQclear(r);
  PQfinish(conn);
  return out;
}

// The first row `sql` yields on a new connection to `url`, each column as
// text (NULL as ""); empty when there is none or on an error.
inline std::vector<std::string> PgRow(const std::string& url, const std::string& sql) {
  std::vector<std::string> row;
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, sql.c_str()) : nullptr;
  if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
    for (int c = 0; c < PQnfields(r); ++c) row.push_back(PQgetvalue(r, 0, c));
  }
  PQclear(r);
  PQfinish(conn);
  return row;
}

// A new, empty database on the server at `server_url`, dropped (with any
// sessions still connected to it) when this goes out of scope.
class TestDatabase {
 public:
  explicit TestDatabase(std::string server_url) : server_url_(std::move(server_url)) {
    std::random_device rd;
    name_ = "sluice_test_" + std::to_string(rd()) + std::to_string(rd() % 1000);
    error_ = PgQuery(server_url_, "CREATE DATABASE " + name_);
  }
  ~TestDatabase() { PgQuery(server_url_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)"); }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // The database's URL, or "" when CREATE DATABASE failed (see error()).
  std::string url() const { return error_.empty() ? WithDatabase(server_url_, name_) : ""; }
  std::string error() const { return error_.empty() ? "" : error_.front(); }
  const std::string& name() const { return name_; }

 private:
  std::string server_url_;
  std::string name_;
  std::vector<std::string> error_;
};

}  // namespace sluice::testutil
