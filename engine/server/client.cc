#include "engine/server/client.h"

#include <cstdlib>
#include <ostream>
#include <thread>

#include <httplib.h>

#include "engine/server/api_json.h"
#include "engine/server/junit.h"
#include "engine/text.h"

namespace sluice::server {
namespace {

struct Reply {
  int code = 0;  // 0 = no reply
  Json body;
  std::string text;
  std::string transport_error;
};

class Api {
 public:
  Api(const SubmitOptions& o, std::string token) : client_(o.server), token_(std::move(token)) {
    client_.set_connection_timeout(10, 0);
    client_.set_read_timeout(60, 0);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
    if (o.insecure_skip_verify) client_.enable_server_certificate_verification(false);
#endif
  }
  bool valid() const { return client_.is_valid(); }

  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    httplib::Headers headers = {{"Authorization", "Bearer " + token_}};
    httplib::Result res = method == "POST"
                              ? client_.Post(path.c_str(), headers, body, "application/json")
                              : client_.Get(path.c_str(), headers);
    Reply r;
    if (!res) {
      r.transport_error = httplib::to_string(res.error());
      return r;
    }
    r.code = res->status;
    r.text = res->body;
    r.body = Json::parse(res->body, nullptr, false);
    return r;
  }

 private:
  httplib::Client client_;
  std::string token_;
};

std::string ErrorText(const Reply& r) {
  if (r.body.is_object() && r.body.contains("error") && r.body["error"].is_object())
    return r.body["error"].value("message", r.text);
  return r.text;
}

int ExitFor(const Reply& r, const std::string& what, const SubmitOptions& o, std::ostream& err) {
  if (r.code == 0) {
    err << "sluice submit: cannot reach " << o.server << " (" << what << "): " << r.transport_error
        << "; check --server and that `sluice serve` runs there\n";
    return kSubmitUnreachable;
  }
  if (r.code == 401) {
    err << "sluice submit: " << o.server << " refused the token (401): " << ErrorText(r)
        << "; pass --token or set SLUICE_TOKEN\n";
    return kSubmitRejected;
  }
  err << "sluice submit: " << what << " failed (HTTP " << r.code << "): " << ErrorText(r) << "\n";
  return r.code >= 500 ? kSubmitUnreachable : kSubmitRejected;
}

}  // namespace

Json SubmitResultJson(const RunSummary& summary, const std::string& server) {
  Json steps = Json::array();
  for (const StepRecord& s : summary.steps) {
    Json d = nullptr;
    if (s.started_at && s.finished_at)
      d = std::chrono::duration<double>(*s.finished_at - *s.started_at).count();
    steps.push_back({{"instance", s.instance}, {"phase", NodePhaseName(s.phase)},
                     {"attempts", s.attempts}, {"exit_code", s.exit_code},
                     {"duration_seconds", d}, {"message", s.message}});
  }
  return {{"run_id", summary.run.id}, {"pipeline", summary.run.pipeline},
          {"phase", RunPhaseName(summary.run.phase)}, {"message", summary.run.message},
          {"url", server + "/#/runs/" + summary.run.id}, {"steps", steps}};
}

int SubmitCommand(const SubmitOptions& o, std::ostream& out, std::ostream& err) {
  std::string token = o.token;
  if (token.empty())
    if (const char* env = std::getenv("SLUICE_TOKEN")) token = env;
  Api api(o, token);
  if (!api.valid()) {
    err << "sluice submit: --server '" << o.server << "' is not a URL like http://host:8080\n";
    return kSubmitRejected;
  }
  Json body = {{"params", Json::object()}};
  for (const auto& [k, v] : o.params) body["params"][k] = v;
  Reply r = api.Call("POST", "/api/v1/pipelines/" + UrlEncode(o.pipeline) + "/runs", body.dump());
  if (r.code != 201) return ExitFor(r, "triggering " + o.pipeline, o, err);
  std::string run_id = r.body.value("run_id", "");

  RunSummary summary;
  summary.run.id = run_id;
  summary.run.pipeline = o.pipeline;
  if (!o.wait) {
    if (o.output == "json") out << SubmitResultJson(summary, o.server).dump() << "\n";
    else out << run_id << "\n";
    return kSubmitOk;
  }
  if (o.output != "json") err << "sluice submit: run " << run_id << " submitted; waiting\n";
  auto start = std::chrono::steady_clock::now();
  std::string last_phase;
  while (true) {
    Reply g = api.Call("GET", "/api/v1/runs/" + UrlEncode(run_id));
    if (g.code != 200) return ExitFor(g, "reading run " + run_id, o, err);
    auto run = RunFromJson(g.body.value("run", Json::object()));
    if (!run) {
      err << "sluice submit: unexpected reply: " << run.error().message() << "\n";
      return kSubmitUnreachable;
    }
    summary.run = *run;
    summary.steps.clear();
    for (const Json& sj : g.body.value("steps", Json::array()))
      if (auto st = StepFromJson(sj)) summary.steps.push_back(*st);
    std::string phase = RunPhaseName(run->phase);
    if (phase != last_phase && o.output != "json")
      err << "sluice submit: " << run_id << " " << phase << "\n";
    last_phase = phase;
    if (IsTerminal(run->phase) && !g.body.value("active", false)) break;
    if (o.timeout && std::chrono::steady_clock::now() - start > *o.timeout) {
      if (!o.cancel_on_timeout) {
        err << "sluice submit: --timeout passed; run " << run_id << " is still " << phase
            << " and goes on (--cancel-on-timeout cancels it)\n";
      } else {
        Reply c = api.Call("POST", "/api/v1/runs/" + UrlEncode(run_id) + "/cancel");
        if (c.code == 202 || c.code == 200)
          err << "sluice submit: --timeout passed; run " << run_id << " was " << phase
              << "; cancellation requested\n";
        else
          (void)ExitFor(c, "cancelling run " + run_id, o, err);
      }
      if (o.output == "json") out << SubmitResultJson(summary, o.server).dump() << "\n";
      return kSubmitTimedOut;
    }
    std::this_thread::sleep_for(o.poll_interval);
  }
  if (!o.junit_path.empty()) {
    if (Status s = WriteJunitXml(summary, o.junit_path); !s.ok())
      err << "sluice submit: " << s.message() << "\n";
  }
  if (o.output == "json") {
    out << SubmitResultJson(summary, o.server).dump() << "\n";
  } else {
    for (const StepRecord& s : summary.steps)
      out << s.instance << "\t" << NodePhaseName(s.phase) << "\tattempts=" << s.attempts
          << (s.message.empty() ? "" : "\t" + s.message) << "\n";
    out << run_id << " " << RunPhaseName(summary.run.phase) << "\n";
  }
  if (summary.run.phase == RunPhase::kSucceeded) return kSubmitOk;
  return summary.run.phase == RunPhase::kCancelled ? kSubmitCancelled : kSubmitRunFailed;
}

}  // namespace sluice::server
