// Fuzz target: the API's JSON (engine/server/api_json.h): the request bodies
// of POST /api/v1/pipelines/{p}/runs and /api/v1/runs/{run}/rerun, and the
// run and step objects `sluice submit` reads back from a server.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/server/api_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace server = sluice::server;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  if (auto submit = server::ParseSubmitBody(body)) {
    // The run's params are stored and served as JSON text.
    (void)submit->params.dump();
  }
  (void)server::ParseRerunBody(body);
  (void)server::ParseIsoTime(std::string(body));
  auto j = server::ParseBodyObject(body);
  if (!j) return 0;
  if (auto run = server::RunFromJson(*j)) (void)server::RunToJson(*run).dump();
  if (auto step = server::StepFromJson(*j)) (void)server::StepToJson(*step).dump();
  return 0;
}
