#pragma once
// Git push webhooks (GitHub, GitLab): signature checks and the list of files
// a push changed.

#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace sluice::server {

// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`.
// True only when `header` has that form and the HMAC matches, compared in
// constant time (CRYPTO_memcmp). An empty secret never verifies.
bool VerifyGithubSignature(std::string_view secret, std::string_view body,
                           std::string_view header);

// "sha256=<hex>": what GitHub sends for `body` signed with `secret`.
std::string GithubSignature(std::string_view secret, std::string_view body);

// GitLab: `X-Gitlab-Token` must equal the configured token; the config holds
// its SHA-256, and the hashes are compared in constant time. An empty hash
// never verifies.
bool VerifyGitlabToken(std::string_view token_sha256_hex, std::string_view header);

// A push event, reduced to what sluice needs.
struct PushEvent {
  std::string ref;                    // "refs/heads/main"
  std::string after;                  // head commit sha
  std::vector<std::string> changed;   // commits[].added + modified, repo-relative, unique, sorted
};

// Parses a GitHub or GitLab push payload (both use commits[].added/modified).
// kInvalidArgument when the body is not JSON or has no `commits` list.
Result<PushEvent> ParsePushEvent(std::string_view body);

}  // namespace sluice::server
