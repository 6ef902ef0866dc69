#pragma once
// Authorization for `sluice serve`: who a caller is (Identity), what each
// role may do, and the one table that maps every HTTP route to what it needs
// (RouteRules). The server authenticates a request (a bearer token today;
// any source that yields an Identity later), finds the route's rule here and
// refuses what the identity's role or pipeline scope does not allow. See
// docs/server.md ("Roles").

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace sluice::server {

// What an identity may do, each role including the ones before it.
enum class Role {
  kViewer,  // read runs, steps, logs, artifacts, lineage, metrics, pipelines
  kRunner,  // also submit, cancel, resume and rerun runs
  kAdmin,   // also delete runs, reload pipelines (and so their schedules), read the audit log
};

// "viewer", "runner", "admin".
const char* RoleName(Role role);
// The role named `name` (exact, lower case), or nullopt.
std::optional<Role> ParseRole(std::string_view name);

// Who made a request, however they proved it: a configured token today
// (TokenAuthenticator, engine/server/config.h). Plain data, copied freely.
struct Identity {
  std::string name;  // the token's name: what the audit log records
  Role role = Role::kAdmin;
  // Pipeline name patterns (PipelinePatternMatches) the identity is limited
  // to; empty = every pipeline.
  std::vector<std::string> pipelines;

  bool scoped() const { return !pipelines.empty(); }
  // Whether the identity may see and act on runs of pipeline `name`.
  bool MayAccessPipeline(std::string_view name) const;
};

// Checks a pipeline name pattern of a token's `pipelines:`: 1 to 63
// characters from a-z, 0-9, '-' (what pipeline names are made of) and the
// wildcards '*' (any run of characters) and '?' (one character). Errors:
// kInvalidArgument saying what is wrong (no location; the config adds it).
Status CheckPipelinePattern(std::string_view pattern);

// Whether `name` matches the whole of `pattern` (see CheckPipelinePattern).
bool PipelinePatternMatches(std::string_view pattern, std::string_view name);

// How a route is let in.
enum class RouteAccess {
  kOpen,       // no credentials (liveness)
  kMetrics,    // open, unless the config's metrics.requireAuth: then kRole (viewer)
  kSignature,  // the handler checks a webhook signature; no identity
  kRole,       // an identity whose role is at least `min_role`
};

// One route: a method and a path pattern in OpenAPI's spelling, where
// "{name}" stands for one non-empty path segment.
struct RouteRule {
  const char* method;  // "GET", "POST", "DELETE"
  const char* path;    // e.g. "/api/v1/runs/{run}/cancel"
  RouteAccess access;
  Role min_role;       // for kRole (and kMetrics when it needs auth)

  // A write: every method but GET. Writes go to the audit log.
  bool write() const;
};

// Every route of the server's API and the health and metrics endpoints,
// with what each needs. The web UI's static files (`/`, `/ui/...`) are not
// routes of this table: they are open and hold no data. A path under /api/
// that no rule matches is refused (404 after authentication).
const std::vector<RouteRule>& RouteRules();

// A route's rule and the values of its "{name}" segments.
struct RouteMatch {
  const RouteRule* rule = nullptr;
  std::vector<std::pair<std::string, std::string>> params;  // name -> value, in path order

  // The value of the segment "{name}", or "".
  std::string Param(std::string_view name) const;
};

// The rule of `method` (upper case; HEAD is GET's) on the request path
// `path` (decoded, no query), or nullopt when no rule matches.
std::optional<RouteMatch> FindRoute(std::string_view method, std::string_view path);

// Whether `identity` may call `rule`: OK, or kPermissionDenied saying which
// role the route needs. Scope (Identity::pipelines) is the caller's to
// check, since it needs the run's pipeline.
Status CheckRole(const Identity& identity, const RouteRule& rule);

}  // namespace sluice::server
