#include "engine/server/authz.h"

#include <cctype>

namespace sluice::server {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kViewer: return "viewer";
    case Role::kRunner: return "runner";
    case Role::kAdmin: return "admin";
  }
  return "admin";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kViewer, Role::kRunner, Role::kAdmin})
    if (name == RoleName(r)) return r;
  return std::nullopt;
}

bool Identity::MayAccessPipeline(std::string_view name) const {
  if (pipelines.empty()) return true;
  for (const std::string& p : pipelines)
    if (PipelinePatternMatches(p, name)) return true;
  return false;
}

Status CheckPipelinePattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > 63)
    return Status::InvalidArgument("a pipeline pattern must be 1 to 63 characters");
  for (char c : pattern) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(std::islower(u) || std::isdigit(u) || c == '-' || c == '*' || c == '?'))
      return Status::InvalidArgument(
          "pipeline pattern '" + std::string(pattern) +
          "' may hold only a-z, 0-9, '-' (pipeline names are DNS labels) and the wildcards '*' "
          "and '?'");
  }
  return Status::Ok();
}

bool PipelinePatternMatches(std::string_view pattern, std::string_view name) {
  // Iterative glob: on a mismatch, let the last '*' take one more character.
  size_t p = 0, n = 0, star = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_n = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++star_n;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool RouteRule::write() const { return std::string_view(method) != "GET"; }

const std::vector<RouteRule>& RouteRules() {
  using A = RouteAccess;
  using R = Role;
  static const std::vector<RouteRule> kRules = {
      {"GET", "/healthz", A::kOpen, R::kViewer},
      {"GET", "/readyz", A::kOpen, R::kViewer},
      {"GET", "/metrics", A::kMetrics, R::kViewer},
      {"GET", "/api/v1/openapi.json", A::kRole, R::kViewer},
      {"GET", "/api/v1/whoami", A::kRole, R::kViewer},
      {"GET", "/auth/login", A::kOpen, R::kViewer},
      {"GET", "/auth/callback", A::kOpen, R::kViewer},
      {"POST", "/auth/logout", A::kOpen, R::kViewer},

      {"GET", "/api/v1/pipelines", A::kRole, R::kViewer},
      {"GET", "/api/v1/pipelines/{pipeline}", A::kRole, R::kViewer},
      {"POST", "/api/v1/pipelines/{pipeline}/runs", A::kRole, R::kRunner},
      {"GET", "/api/v1/pipelines/{pipeline}/metrics", A::kRole, R::kViewer},
      {"POST", "/api/v1/reload", A::kRole, R::kAdmin},
      {"GET", "/api/v1/schedules", A::kRole, R::kViewer},

      {"GET", "/api/v1/runs", A::kRole, R::kViewer},
      {"GET", "/api/v1/runs/{run}", A::kRole, R::kViewer},
      {"DELETE", "/api/v1/runs/{run}", A::kRole, R::kAdmin},
      {"GET", "/api/v1/runs/{run}/graph", A::kRole, R::kViewer},
      {"GET", "/api/v1/runs/{run}/steps", A::kRole, R::kViewer},
      {"GET", "/api/v1/runs/{run}/steps/{instance}", A::kRole, R::kViewer},
      {"GET", "/api/v1/runs/{run}/steps/{instance}/logs", A::kRole, R::kViewer},
      {"POST", "/api/v1/runs/{run}/cancel", A::kRole, R::kRunner},
      {"POST", "/api/v1/runs/{run}/resume", A::kRole, R::kRunner},
      {"POST", "/api/v1/runs/{run}/rerun", A::kRole, R::kRunner},
      {"GET", "/api/v1/runs/{run}/artifacts", A::kRole, R::kViewer},
      {"GET", "/api/v1/lineage", A::kRole, R::kViewer},
      {"GET", "/api/v1/audit", A::kRole, R::kAdmin},

      {"POST", "/api/v1/webhooks/github", A::kSignature, R::kViewer},
      {"POST", "/api/v1/webhooks/gitlab", A::kSignature, R::kViewer},
  };
  return kRules;
}

std::string RouteMatch::Param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return v;
  return "";
}

namespace {

// Matches `path` against `pattern` segment by segment, collecting "{name}"
// segments into `match`.
bool MatchPath(std::string_view pattern, std::string_view path, RouteMatch* match) {
  match->params.clear();
  size_t p = 0, q = 0;
  while (p < pattern.size() && q < path.size()) {
    if (pattern[p] != '/' || path[q] != '/') return false;
    size_t pe = pattern.find('/', p + 1), qe = path.find('/', q + 1);
    if (pe == std::string_view::npos) pe = pattern.size();
    if (qe == std::string_view::npos) qe = path.size();
    std::string_view ps = pattern.substr(p + 1, pe - p - 1), qs = path.substr(q + 1, qe - q - 1);
    if (ps.size() > 2 && ps.front() == '{' && ps.back() == '}') {
      if (qs.empty()) return false;
      match->params.emplace_back(std::string(ps.substr(1, ps.size() - 2)), std::string(qs));
    } else if (ps != qs) {
      return false;
    }
    p = pe;
    q = qe;
  }
  return p == pattern.size() && q == path.size();
}

}  // namespace

std::optional<RouteMatch> FindRoute(std::string_view method, std::string_view path) {
  // httplib answers HEAD with the GET handler, less the body: the same rule.
  if (method == "HEAD") method = "GET";
  RouteMatch match;
  for (const RouteRule& rule : RouteRules())
    if (method == rule.method && MatchPath(rule.path, path, &match)) {
      match.rule = &rule;
      return match;
    }
  return std::nullopt;
}

Status CheckRole(const Identity& identity, const RouteRule& rule) {
  if (rule.access == RouteAccess::kOpen || rule.access == RouteAccess::kSignature) return Status::Ok();
  if (identity.role >= rule.min_role) return Status::Ok();
  return Status::PermissionDenied("'" + identity.name + "' has the role " + RoleName(identity.role) +
                                  "; " + rule.method + " " + rule.path + " needs " +
                                  RoleName(rule.min_role) + " or above");
}

}  // namespace sluice::server
