// Fuzz target: GitHub and GitLab push payloads (engine/server/webhook.h), and
// the signature checks that run on the same untrusted bytes first.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/server/webhook.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace server = sluice::server;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)server::VerifyGithubSignature("secret", body, body);
  (void)server::VerifyGitlabToken(
      "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", body);
  if (auto event = server::ParsePushEvent(body)) {
    // The server answers with these fields as JSON.
    nlohmann::json reply = {{"ref", event->ref}, {"after", event->after}, {"changed", event->changed}};
    (void)reply.dump();
  }
  return 0;
}
