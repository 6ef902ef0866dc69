#pragma once
// ServerConfig: the `sluice serve` configuration file (YAML; JSON is valid
// YAML, so either works), and bearer-token authentication.
//
//   listen: 127.0.0.1:8080        # host:port; --listen overrides
//   maxConcurrentRuns: 4          # runs executing at once; more wait queued
//   reloadInterval: 2s            # mtime scan of the pipelines directory
//   tokens:                       # API bearer tokens, stored as SHA-256 hex
//     - name: ci
//       sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//       role: runner              # viewer | runner | admin (default admin)
//       pipelines: ["retrain-*"]  # optional: only runs of matching pipelines
//   webhooks:
//     github:
//       secret: "..."             # or secretEnv: NAME (read from the environment)
//     gitlab:
//       tokenSha256: "..."        # SHA-256 hex of the X-Gitlab-Token value
//   artifacts: s3://bucket/prefix # artifact store of runs whose pipeline names none;
//                                 # `serve --artifacts` overrides it
//   store: postgres://sluice:PASSWORD@db:5432/sluice
//                                 # the store's records on PostgreSQL (files stay in
//                                 # the --store directory); `serve --store` overrides it
//   historyLimit: 100             # per pipeline: newest N succeeded + N failed runs
//                                 # kept (every trigger); 0 = keep all (default)
//   metrics:
//     requireAuth: false          # /metrics open to scrapers by default
//   oidc:                         # OpenID Connect identities (OidcConfig)
//     issuer: https://dex.example.com
//     clientID: sluice
//     clientSecretFile: /etc/sluice/oidc-secret   # or clientSecretEnv: NAME
//     caFile: /etc/sluice/oidc-ca.pem             # default: the system's CAs
//     redirectURL: https://sluice.example.com/auth/callback  # UI login
//     roles:                      # group -> role (and optional pipelines)
//       - {group: ml-admins, role: admin}
//       - {group: ml, role: runner, pipelines: ["retrain-*"]}
//     defaultRole: viewer         # for a user in no mapped group; default none (403)
//   http:                         # limits on HTTP clients (HttpLimits)
//     requestTimeout: 10s         # a request's headers and body must arrive within
//     idleTimeout: 5s             # a kept-alive connection idle this long is closed
//     maxRequestsPerConnection: 100
//     maxConnections: 256         # open connections, all clients together
//     maxConnectionsPerClient: 32 # open connections from one IP address
//     maxBodyBytes: 16777216      # largest request body
//
// The hash of a token: `printf %s TOKEN | sha256sum` (HashToken).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/server/authz.h"
#include "engine/spec.h"
#include "engine/status.h"

namespace sluice::server {

// One API token: a name for audit logs, the SHA-256 hex of its value, and
// what its holder may do (engine/server/authz.h).
struct TokenEntry {
  std::string name;
  std::string sha256_hex;  // 64 lower-case hex characters
  Role role = Role::kAdmin;  // the default keeps configs without `role:` as they were
  std::vector<std::string> pipelines;  // name patterns; empty = every pipeline
};

// Limits on HTTP clients, enforced by HttpServer (engine/server/http_server.h).
// The defaults suit a server that CI systems, a few browsers and Git hosts
// call; docs/server.md ("Limits and threat model") explains each.
struct HttpLimits {
  // From the connection's accept (or the first byte of a kept-alive
  // connection's next request) until the request's last body byte.
  Duration request_timeout{10000};
  // How long a kept-alive connection may wait for its next request.
  Duration idle_timeout{5000};
  int max_requests_per_connection = 100;
  // Connections beyond these are answered 503 and closed at once.
  int max_connections = 256;
  int max_connections_per_client = 32;
  int64_t max_body_bytes = 16 << 20;
};

// One `oidc.roles:` entry: members of `group` get `role`, limited to
// `pipelines` (empty = every pipeline).
struct OidcRoleMapping {
  std::string group;
  Role role = Role::kViewer;
  std::vector<std::string> pipelines;
};

// The `oidc:` section: ID tokens of this issuer are accepted as bearer
// tokens and, with a redirect URL, as the web UI's login (engine/server/oidc.h).
struct OidcConfig {
  std::string issuer;     // https URL, exactly as tokens' `iss` (and discovery) spell it
  std::string client_id;  // tokens' `aud` must contain it
  // Read from clientSecretFile or clientSecretEnv; never logged, stored or
  // returned. "" = a public client (PKCE alone).
  std::string client_secret;
  std::string ca_file;       // PEM CAs for the issuer's TLS; "" = the system's
  std::string redirect_url;  // ".../auth/callback"; "" = no UI login
  std::vector<std::string> scopes = {"openid", "email", "profile", "groups"};
  std::string groups_claim = "groups";
  std::string username_claim = "email";
  std::vector<OidcRoleMapping> roles;
  std::optional<Role> default_role;  // nullopt: no mapped group = 403
};

struct ServerConfig {
  std::string listen;  // "" = keep the command line's / default
  int max_concurrent_runs = 4;
  Duration reload_interval{2000};
  std::vector<TokenEntry> tokens;
  std::string github_secret;       // "" = GitHub webhook disabled (401)
  std::string gitlab_token_sha256; // "" = GitLab webhook disabled (401)
  bool metrics_require_auth = false;
  // Server-wide retention (see engine/server/retention.h): after a run ends,
  // the newest N Succeeded and N other finished runs of its pipeline are
  // kept, older ones deleted. 0 = keep every run.
  int history_limit = 0;
  // Artifact store ("s3://bucket/prefix") for runs whose pipeline has no
  // `artifacts:` and when `serve` has no --artifacts; "" = the local store.
  std::string artifacts;
  // Store of records ("postgres://..."), used when `serve` has no --store; ""
  // = the SQLite store in the state directory.
  std::string store;
  HttpLimits http;
  std::optional<OidcConfig> oidc;  // nullopt: configured tokens only
};

// Reads and validates the config at `path`. Errors (kInvalidArgument) say
// "path:line:col: what" for YAML errors, unknown keys, malformed hashes and
// durations, unknown roles, bad pipeline patterns and limits out of range; kNotFound when the file does not exist.
Result<ServerConfig> LoadServerConfig(const std::string& path);

// As LoadServerConfig, from text; `file_name` is used in messages.
Result<ServerConfig> ParseServerConfig(std::string_view text, const std::string& file_name);

// Lower-case hex SHA-256 of `token`: what goes in `tokens[].sha256`.
std::string HashToken(std::string_view token);

// Checks "Authorization: Bearer <token>" values against hashed tokens.
// Thread-safe after construction (read-only).
class TokenAuthenticator {
 public:
  explicit TokenAuthenticator(std::vector<TokenEntry> tokens);

  // The matching token's identity (its name, role and pipelines), or
  // nullopt. `header` is the whole Authorization header value. Every stored
  // hash is compared, in constant time (CRYPTO_memcmp), whether or not an
  // earlier one matched.
  std::optional<Identity> Authenticate(std::string_view header) const;

 private:
  std::vector<TokenEntry> tokens_;
};

// Constant-time equality of two byte strings (CRYPTO_memcmp); different
// lengths compare unequal without looking at the bytes.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace sluice::server
