#include "engine/server/openapi.h"

#include <cctype>
#include <string>
#include <vector>

#include "engine/server/authz.h"

namespace sluice::server {
namespace {

struct Param {
  const char* name;
  const char* in;  // path | query
  const char* type;
  const char* description;
};

struct Op {
  const char* method;
  const char* path;
  const char* id;
  const char* tag;
  const char* summary;
  std::vector<Param> params;
  const char* body_schema;      // component name or nullptr
  const char* response_schema;  // component name or nullptr
  const char* security;         // nullptr = bearer; "" = open; otherwise a scheme name
  const char* content_type = "application/json";
};

Json Ref(const std::string& name) { return {{"$ref", "#/components/schemas/" + name}}; }

std::vector<Op> Operations() {
  const Param run{"run", "path", "string", "Run id (a unique prefix is accepted)"};
  const Param instance{"instance", "path", "string", "Step instance, e.g. train[1] (URL-encoded)"};
  const Param pipeline{"pipeline", "path", "string", "Pipeline metadata.name"};
  return {
      {"get", "/api/v1/openapi.json", "getOpenApi", "meta", "This document", {}, nullptr, nullptr, nullptr},
      {"get", "/healthz", "healthz", "meta", "Liveness (no auth)", {}, nullptr, nullptr, ""},
      {"get", "/api/v1/whoami", "whoami", "meta", "The caller's name, role and pipeline scope", {},
       nullptr, "Whoami", nullptr},
      {"get", "/auth/login", "oidcLogin", "auth",
       "Web UI login: redirects to the OIDC issuer (authorization code with PKCE); 404 without "
       "oidc.redirectURL",
       {}, nullptr, nullptr, "", "text/html"},
      {"get", "/auth/callback", "oidcCallback", "auth",
       "The issuer's redirect back: checks state, exchanges the code, sets the session cookie and "
       "redirects to /",
       {{"code", "query", "string", "Authorization code"}, {"state", "query", "string", "The login's state"}},
       nullptr, nullptr, "", "text/html"},
      {"post", "/auth/logout", "oidcLogout", "auth",
       "Clears the web UI's session cookie", {}, nullptr, "Message", ""},
      {"get", "/readyz", "readyz", "meta",
       "Readiness (no auth): 200 when the store answers and the leader election has answered; else 503",
       {}, nullptr, nullptr, ""},
      {"get", "/metrics", "metrics", "meta",
       "Prometheus metrics (no auth unless metrics.requireAuth)", {}, nullptr, nullptr, "",
       "text/plain"},
      {"get", "/api/v1/pipelines", "listPipelines", "pipelines",
       "Pipelines with lint status and diagnostics", {}, nullptr, "PipelineList", nullptr},
      {"get", "/api/v1/pipelines/{pipeline}", "getPipeline", "pipelines",
       "One pipeline: steps, DAG, schedule (next times), diagnostics", {pipeline}, nullptr,
       "Pipeline", nullptr},
      {"post", "/api/v1/pipelines/{pipeline}/runs", "triggerRun", "runs",
       "Start a run with params", {pipeline}, "TriggerRequest", "RunRef", nullptr},
      {"get", "/api/v1/pipelines/{pipeline}/metrics", "comparePipelineMetrics", "runs",
       "Step metrics across the latest runs of a pipeline",
       {pipeline, {"limit", "query", "integer", "Runs to compare (default 20)"}}, nullptr,
       "MetricsComparison", nullptr},
      {"post", "/api/v1/reload", "reload", "pipelines", "Rescan the pipelines directory now", {},
       nullptr, "ReloadReport", nullptr},
      {"get", "/api/v1/runs", "listRuns", "runs", "Runs, newest first",
       {{"pipeline", "query", "string", "Only this pipeline"},
        {"phase", "query", "string", "Pending|Running|Succeeded|Failed|Error|Cancelled"},
        {"since", "query", "string", "RFC 3339 time; runs created at or after it"},
        {"limit", "query", "integer", "At most this many (default 50, max 1000)"}},
       nullptr, "RunList", nullptr},
      {"get", "/api/v1/runs/{run}", "getRun", "runs", "A run with its steps", {run}, nullptr,
       "RunDetail", nullptr},
      {"delete", "/api/v1/runs/{run}", "deleteRun", "runs",
       "Delete a finished run: its records, logs and step directories (artifact bytes stay until "
       "`sluice gc`)",
       {run}, nullptr, "Message", nullptr},
      {"get", "/api/v1/runs/{run}/graph", "getRunGraph", "runs",
       "The run's DAG: step instances with phases, edges and topological layers", {run}, nullptr,
       "RunGraph", nullptr},
      {"get", "/api/v1/runs/{run}/steps", "listSteps", "runs", "Step instances of a run", {run},
       nullptr, "StepList", nullptr},
      {"get", "/api/v1/runs/{run}/steps/{instance}", "getStep", "runs", "One step instance",
       {run, instance}, nullptr, "Step", nullptr},
      {"get", "/api/v1/runs/{run}/steps/{instance}/logs", "getStepLogs", "runs",
       "The step's log (text). With follow=true the response is chunked and ends when the step "
       "does",
       {run, instance, {"follow", "query", "boolean", "Stream until the step ends"},
        {"offset", "query", "integer", "Start at this byte offset"}},
       nullptr, nullptr, nullptr, "text/plain"},
      {"post", "/api/v1/runs/{run}/cancel", "cancelRun", "runs", "Cancel a queued or running run",
       {run}, nullptr, "Message", nullptr},
      {"post", "/api/v1/runs/{run}/resume", "resumeRun", "runs",
       "Continue a failed or interrupted run: succeeded steps are kept", {run}, nullptr, "RunRef",
       nullptr},
      {"post", "/api/v1/runs/{run}/rerun", "rerunRun", "runs",
       "Re-run steps and everything downstream, reusing upstream outputs", {run}, "RerunRequest",
       "RunRef", nullptr},
      {"get", "/api/v1/runs/{run}/artifacts", "listRunArtifacts", "lineage",
       "Artifacts a run read and wrote, with the producing step instance", {run}, nullptr,
       "ArtifactList", nullptr},
      {"get", "/api/v1/lineage", "queryLineage", "lineage",
       "Lineage graph of an artifact (digest prefix or RUN/STEP/NAME), step or run",
       {{"target", "query", "string", "What to start from"},
        {"downstream", "query", "boolean", "What was built from it (default: upstream)"},
        {"depth", "query", "integer", "Max artifact hops (default 64)"}},
       nullptr, "Lineage", nullptr},
      {"get", "/api/v1/schedules", "listSchedules", "pipelines",
       "Scheduled pipelines: cron, last handled time and next time", {}, nullptr, "ScheduleList",
       nullptr},
      {"get", "/api/v1/audit", "listAudit", "meta",
       "The audit log of writes, newest first: who, what, when, the answer",
       {{"since", "query", "string", "RFC 3339 time; entries at or after it"},
        {"limit", "query", "integer", "At most this many (default 100, max 10000)"}},
       nullptr, "AuditList", nullptr},
      {"post", "/api/v1/webhooks/github", "githubWebhook", "webhooks",
       "GitHub push event (X-Hub-Signature-256 HMAC)", {}, "PushEvent", "WebhookResult", "github"},
      {"post", "/api/v1/webhooks/gitlab", "gitlabWebhook", "webhooks",
       "GitLab push event (X-Gitlab-Token)", {}, "PushEvent", "WebhookResult", "gitlab"},
  };
}

Json Schemas() {
  Json obj = {{"type", "object"}};
  Json any_obj = {{"type", "object"}, {"additionalProperties", true}};
  Json phase = {{"type", "string"}};
  Json run = {{"type", "object"},
              {"properties",
               {{"id", {{"type", "string"}}},
                {"pipeline", {{"type", "string"}}},
                {"phase", phase},
                {"message", {{"type", "string"}}},
                {"params", any_obj},
                {"executor", {{"type", "string"}}},
                {"created_at", {{"type", "string"}, {"format", "date-time"}}},
                {"started_at", {{"type", "string"}, {"format", "date-time"}}},
                {"finished_at", {{"type", "string"}, {"format", "date-time"}}},
                {"resumed_from", {{"type", "string"}}},
                {"git_commit", {{"type", "string"}}}}}};
  Json step = {{"type", "object"},
               {"properties",
                {{"instance", {{"type", "string"}}},
                 {"step", {{"type", "string"}}},
                 {"index", {{"type", "integer"}}},
                 {"phase", phase},
                 {"attempts", {{"type", "integer"}}},
                 {"exit_code", {{"type", "integer"}}},
                 {"message", {{"type", "string"}}},
                 {"started_at", {{"type", "string"}}},
                 {"finished_at", {{"type", "string"}}},
                 {"duration_seconds", {{"type", "number"}}},
                 {"metrics", any_obj},
                 {"output_params", any_obj},
                 {"outputs", {{"type", "array"}, {"items", any_obj}}},
                 {"inputs", {{"type", "array"}, {"items", any_obj}}},
                 {"cached_from", {{"type", "string"}}}}}};
  Json run_graph = {{"type", "object"}};
  run_graph["properties"]["nodes"] = {{"type", "array"}, {"items", any_obj}};
  run_graph["properties"]["edges"] = {{"type", "array"}, {"items", {{"type", "array"}}}};
  Json webhook_result = {{"type", "object"}};
  webhook_result["properties"]["triggered"] = {{"type", "array"}, {"items", any_obj}};
  webhook_result["properties"]["changed"] = {{"type", "array"}, {"items", {{"type", "string"}}}};
  webhook_result["properties"]["duplicate"] = {{"type", "boolean"}};  // a delivery seen before
  webhook_result["properties"]["delivery"] = {{"type", "string"}};
  return {
      {"Error", {{"type", "object"},
                 {"properties", {{"error", {{"type", "object"},
                                            {"properties", {{"code", {{"type", "string"}}},
                                                            {"message", {{"type", "string"}}}}}}}}}}},
      {"Run", run},
      {"Step", step},
      {"RunList", {{"type", "object"}, {"properties", {{"runs", {{"type", "array"}, {"items", Ref("Run")}}}}}}},
      {"StepList", {{"type", "object"}, {"properties", {{"steps", {{"type", "array"}, {"items", Ref("Step")}}}}}}},
      {"RunDetail", {{"type", "object"}, {"properties", {{"run", Ref("Run")}, {"steps", {{"type", "array"}, {"items", Ref("Step")}}}}}}},
      {"RunRef", {{"type", "object"}, {"properties", {{"run_id", {{"type", "string"}}}, {"url", {{"type", "string"}}}}}}},
      {"Whoami", {{"type", "object"},
                  {"properties", {{"name", {{"type", "string"}}},
                                  {"role", {{"type", "string"}}},
                                  {"pipelines", {{"type", "array"}, {"items", {{"type", "string"}}}}}}}}},
      {"Message", {{"type", "object"}, {"properties", {{"message", {{"type", "string"}}}}}}},
      {"TriggerRequest", {{"type", "object"},
                          {"properties", {{"params", any_obj},
                                          {"run_id", {{"type", "string"},
                                                      {"pattern", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
                                                      {"description", "no '..' (engine/run_id.h)"}}}}}}},
      {"RerunRequest", {{"type", "object"},
                        {"required", {"from"}},
                        {"properties", {{"from", {{"type", "array"}, {"items", {{"type", "string"}}}}}}}}},
      {"Pipeline", any_obj},
      {"PipelineList", {{"type", "object"}, {"properties", {{"pipelines", {{"type", "array"}, {"items", any_obj}}}}}}},
      {"ReloadReport", any_obj},
      {"RunGraph", run_graph},
      {"MetricsComparison", any_obj},
      {"ArtifactList", any_obj},
      {"Lineage", any_obj},
      {"ScheduleList", any_obj},
      {"PushEvent", any_obj},
      {"WebhookResult", webhook_result},
      {"AuditEntry", {{"type", "object"},
                      {"properties", {{"id", {{"type", "integer"}}},
                                      {"at", {{"type", "string"}, {"format", "date-time"}}},
                                      {"who", {{"type", "string"}}},
                                      {"role", {{"type", "string"}}},
                                      {"method", {{"type", "string"}}},
                                      {"route", {{"type", "string"}}},
                                      {"run_id", {{"type", "string"}}},
                                      {"pipeline", {{"type", "string"}}},
                                      {"code", {{"type", "integer"}}}}}}},
      {"AuditList", {{"type", "object"}, {"properties", {{"entries", {{"type", "array"}, {"items", Ref("AuditEntry")}}}}}}},
  };
}

}  // namespace

Json OpenApiDocument() {
  Json paths = Json::object();
  for (const Op& op : Operations()) {
    Json o = {{"operationId", op.id}, {"summary", op.summary}, {"tags", {op.tag}}};
    Json params = Json::array();
    for (const Param& p : op.params)
      params.push_back({{"name", p.name},
                        {"in", p.in},
                        {"required", std::string(p.in) == "path"},
                        {"description", p.description},
                        {"schema", {{"type", p.type}}}});
    if (!params.empty()) o["parameters"] = params;
    if (op.body_schema)
      o["requestBody"] = {{"required", false},
                          {"content", {{"application/json", {{"schema", Ref(op.body_schema)}}}}}};
    Json ok_content = op.response_schema
                          ? Json{{op.content_type, {{"schema", Ref(op.response_schema)}}}}
                          : Json{{op.content_type, {{"schema", {{"type", "string"}}}}}};
    std::string ok_code = std::string(op.method) == "post" && op.response_schema &&
                                  std::string(op.response_schema) == "RunRef"
                              ? "201"
                              : "200";
    Json err = {{"application/json", {{"schema", Ref("Error")}}}};
    o["responses"] = {{ok_code, {{"description", "OK"}, {"content", ok_content}}}};
    if (op.security == nullptr || std::string(op.security) != "") {
      o["responses"]["401"] = {{"description", "Missing or invalid credentials"}, {"content", err}};
    }
    // The least role that may call it (RouteRules, engine/server/authz.h).
    std::string method = op.method;
    for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (const RouteRule& rule : RouteRules())
      if (rule.method == method && std::string(rule.path) == op.path && rule.access == RouteAccess::kRole) {
        o["x-sluice-role"] = RoleName(rule.min_role);
        o["responses"]["403"] = {{"description", "The token's role is below " + std::string(RoleName(rule.min_role))},
                                 {"content", err}};
      }
    if (!op.params.empty())
      o["responses"]["404"] = {{"description", "Not found"}, {"content", err}};
    if (op.security != nullptr) {
      std::string s = op.security;
      o["security"] = s.empty() ? Json::array() : Json::array({{{s, Json::array()}}});
    }
    paths[op.path][op.method] = o;
  }
  return {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "sluice server API"},
        {"version", SLUICE_VERSION},
        {"description",
         "Run, watch and schedule sluice pipelines. Every call needs `Authorization: Bearer "
         "<token>` unless its `security` says otherwise, from a token whose role is at least "
         "the operation's `x-sluice-role` (viewer < runner < admin); with `oidc:` configured, an "
         "OIDC ID token (or the web UI's session cookie, plus the X-Sluice-CSRF header on writes) "
         "whose groups map to such a role; see docs/server.md."}}},
      {"servers", {{{"url", "/"}}}},
      {"security", {{{"bearer", Json::array()}}}},
      {"paths", paths},
      {"components",
       {{"securitySchemes",
         {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}},
          {"github", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-Hub-Signature-256"},
                      {"description", "sha256=HMAC-SHA256(secret, raw body), hex"}}},
          {"gitlab", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-Gitlab-Token"}}}}},
        {"schemas", Schemas()}}},
  };
}

}  // namespace sluice::server
