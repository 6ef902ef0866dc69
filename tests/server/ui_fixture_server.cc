// A `sluice serve` over a fresh store holding one finished run, for the web
// UI's end-to-end test (tests/ui). The Runner is the fake of
// server_test_util.h, so the test needs no Python and no executor.
//
//   ui_fixture_server DIR
// prints one JSON line {"url", "run_id", "token", "steps"} to stdout once
// the run has finished, then serves until stdin closes or SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "engine/server/config.h"
#include "engine/server/server.h"
#include "server_test_util.h"

using namespace sluice;
using namespace sluice::server;

namespace {

const char kPipeline[] = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: retrain
  description: UI fixture
params:
  seed:
    type: int
    default: 42
steps:
  - name: prepare
    command: [echo, prepare]
  - name: train-logreg
    depends: [prepare]
    command: [echo, train]
  - name: train-forest
    depends: [prepare]
    command: [echo, train]
  - name: select
    depends: [train-logreg, train-forest]
    command: [echo, select]
  - name: fail
    depends: [select]
    command: [echo, fail]
finally:
  - name: report
    command: [echo, report]
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: ui_fixture_server DIR\n");
    return 2;
  }
  std::string dir = argv[1];
  const std::string token = "ui-test-token";          // admin
  const std::string viewer_token = "ui-viewer-token";  // viewer
  testing::WriteFile(dir + "/pipelines/retrain.yaml", kPipeline);
  testing::WriteFile(dir + "/server.yaml",
                     "tokens:\n  - name: ui\n    sha256: " + HashToken(token) + "\n" +
                         "  - name: ui-viewer\n    role: viewer\n    sha256: " + HashToken(viewer_token) + "\n");
  ServerOptions o;
  o.pipelines_dir = dir + "/pipelines";
  o.state_dir = dir + "/state";
  o.listen = "127.0.0.1:0";
  o.config_path = dir + "/server.yaml";
  o.run_scheduler = false;
  o.resume_interrupted = false;
  testing::FakeRunControl control;
  Server* self = nullptr;
  Server server(o, nullptr, nullptr, testing::FakeFactory([&self] { return self->store(); }, &control));
  self = &server;
  if (Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "ui_fixture_server: %s\n", s.ToString().c_str());
    return 1;
  }
  Store* store = server.store();
  SubmitRequest req;
  req.pipeline = "retrain";
  auto id = server.runs()->Submit(req);
  if (!id) {
    std::fprintf(stderr, "ui_fixture_server: %s\n", id.error().ToString().c_str());
    for (const PipelineFile& f : server.registry()->List())
      for (const auto& d : f.diagnostics) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    return 1;
  }
  if (!server.runs()->WaitIdle(std::chrono::seconds(60))) {
    std::fprintf(stderr, "ui_fixture_server: the fixture run did not finish in 60s\n");
    return 1;
  }
  Json steps = Json::object();
  if (auto list = store->ListSteps(*id))
    for (const StepRecord& st : *list) steps[st.instance] = NodePhaseName(st.phase);
  std::cout << Json{{"url", server.url()}, {"run_id", *id}, {"token", token}, {"viewer_token", viewer_token}, {"steps", steps}}.dump()
            << std::endl;
  // Serve until the test closes our stdin (or kills us).
  char buf[256];
  while (::read(0, buf, sizeof buf) > 0) {
  }
  server.Stop();
  return 0;
}
