#pragma once
// Git push webhooks (GitHub, GitLab): signature checks and the list of files
// a push changed.

#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

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

// True when `id` can be a delivery id (X-GitHub-Delivery, GitLab's
// Idempotency-Key / X-Gitlab-Event-UUID): 1-128 printable ASCII characters
// without spaces. (GUIDs are 36.)
bool IsDeliveryId(std::string_view id);

// The webhook deliveries already handled, so that a delivery sent twice (a
// Git host's retry, a "Redeliver" click, or a captured request replayed:
// the signature has no timestamp) triggers runs once.
//
// Bounded: it remembers the deliveries of the last `window`, at most
// `capacity` of them (the oldest are forgotten first). Durable across
// restarts: each new delivery is appended to a file, one line
// "<unix seconds> <key>", flushed (not fsync'ed: a machine crash may lose
// the last second's ids); Open() reads it back and rewrites it without the
// expired lines, and it is rewritten again whenever the appended lines
// reach `capacity`. Thread-safe.
class DeliveryLog {
 public:
  // `path` "" keeps the deliveries in memory only.
  DeliveryLog(std::string path, Duration window, size_t capacity);
  ~DeliveryLog();

  // Loads the file (a missing one is empty; malformed lines are skipped)
  // and compacts it. Errors (kUnavailable) when the file cannot be read or
  // written; the log then works in memory only.
  Status Open(TimePoint now);

  // Records delivery `key` (e.g. "github:<X-GitHub-Delivery>") at `now`.
  // True when it is new; false when it was already seen within the window,
  // with `*first_seen` (if given) set to when.
  bool Claim(const std::string& key, TimePoint now, TimePoint* first_seen = nullptr);

 private:
  void ForgetOld(TimePoint now);  // mu_ held
  Status Rewrite();               // mu_ held

  const std::string path_;
  const Duration window_;
  const size_t capacity_;
  std::mutex mu_;
  std::unordered_map<std::string, TimePoint> seen_;
  std::deque<std::pair<TimePoint, std::string>> order_;  // oldest first
  std::FILE* out_ = nullptr;  // append handle of path_, or null
  size_t appended_ = 0;       // lines appended since the last rewrite
};

}  // namespace sluice::server
