#include "engine/server/config.h"

#include <openssl/crypto.h>

#include <cctype>
#include <utility>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "engine/s3_url.h"
#include "engine/sha256.h"
#include "engine/store/open_store.h"

namespace sluice::server {
namespace {

std::string Where(const std::string& file, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

Status Bad(const std::string& file, const YAML::Node& node, const std::string& what) {
  return Status::InvalidArgument(Where(file, node) + ": " + what);
}

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c)))
      return false;
  return true;
}

// "500ms", "2s", "1m", "1h": the subset of the DSL's durations a config needs.
std::optional<Duration> ParseSimpleDuration(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  // At most 9 digits: parsed without overflow, and any unit stays in range.
  if (i == 0 || i > 9) return std::nullopt;
  long long n = std::stoll(text.substr(0, i));
  std::string unit = text.substr(i);
  if (unit == "ms") return Duration(n);
  if (unit == "s") return Duration(n * 1000);
  if (unit == "m") return Duration(n * 60000);
  if (unit == "h") return Duration(n * 3600000);
  return std::nullopt;
}

Status CheckKeys(const std::string& file, const YAML::Node& map,
                 std::initializer_list<const char*> allowed, const std::string& section) {
  for (const auto& kv : map) {
    std::string key = kv.first.as<std::string>();
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      return Bad(file, kv.first, "unknown key '" + key + "' in " + section + " (expected one of: " +
                                     list + ")");
    }
  }
  return Status::Ok();
}

// The `http:` section. Every limit has a floor: a zero or negative one
// would refuse every client, which is never what a config means.
Status ParseHttpLimits(const std::string& file, const YAML::Node& h, HttpLimits* limits) {
  if (!h.IsMap()) return Bad(file, h, "http must be a mapping of limits");
  if (Status s = CheckKeys(file, h,
                           {"requestTimeout", "idleTimeout", "maxRequestsPerConnection",
                            "maxConnections", "maxConnectionsPerClient", "maxBodyBytes"},
                           "http");
      !s.ok())
    return s;
  for (auto [key, field] : {std::pair{"requestTimeout", &limits->request_timeout},
                            std::pair{"idleTimeout", &limits->idle_timeout}}) {
    YAML::Node n = h[key];
    if (!n) continue;
    auto d = ParseSimpleDuration(n.as<std::string>());
    if (!d || d->count() < 100 || *d > std::chrono::hours(1))
      return Bad(file, n, std::string("http.") + key + " '" + n.as<std::string>() +
                              "' is not a duration from 100ms to 1h, like 500ms, 10s or 1m");
    *field = *d;
  }
  for (auto [key, field] : {std::pair{"maxRequestsPerConnection", &limits->max_requests_per_connection},
                            std::pair{"maxConnections", &limits->max_connections},
                            std::pair{"maxConnectionsPerClient", &limits->max_connections_per_client}}) {
    YAML::Node n = h[key];
    if (!n) continue;
    *field = n.as<int>();
    if (*field < 1 || *field > 100000)
      return Bad(file, n, std::string("http.") + key + " must be from 1 to 100000");
  }
  if (limits->max_connections_per_client > limits->max_connections)
    return Bad(file, h["maxConnectionsPerClient"] ? h["maxConnectionsPerClient"] : h,
               "http.maxConnectionsPerClient (" + std::to_string(limits->max_connections_per_client) +
                   ") is more than http.maxConnections (" + std::to_string(limits->max_connections) +
                   ")");
  if (YAML::Node n = h["maxBodyBytes"]) {
    limits->max_body_bytes = n.as<int64_t>();
    if (limits->max_body_bytes < 1024 || limits->max_body_bytes > (int64_t{1} << 32))
      return Bad(file, n, "http.maxBodyBytes must be from 1024 to 4294967296");
  }
  return Status::Ok();
}

Status ParsePipelinePatterns(const std::string& file, const YAML::Node& p, std::vector<std::string>* out);
Status ParseRoleNode(const std::string& file, const YAML::Node& n, Role* role);

// The `tokens:` list: name, hash, role and pipeline scope of each.
Status ParseTokens(const std::string& file, const YAML::Node& tokens, std::vector<TokenEntry>* out) {
  if (!tokens.IsSequence()) return Bad(file, tokens, "tokens must be a list of {name, sha256}");
  for (const auto& t : tokens) {
    if (!t.IsMap()) return Bad(file, t, "a token must be a mapping {name, sha256}");
    if (Status s = CheckKeys(file, t, {"name", "sha256", "role", "pipelines"}, "a token"); !s.ok())
      return s;
    TokenEntry entry;
    entry.name = t["name"] ? t["name"].as<std::string>() : "";
    entry.sha256_hex = t["sha256"] ? t["sha256"].as<std::string>() : "";
    if (!IsHex64(entry.sha256_hex))
      return Bad(file, t["sha256"] ? t["sha256"] : t,
                 "token sha256 must be 64 lower-case hex characters: the SHA-256 of the "
                 "token (`printf %s TOKEN | sha256sum`), never the token itself");
    if (YAML::Node r = t["role"])
      if (Status s = ParseRoleNode(file, r, &entry.role); !s.ok()) return s;
    if (YAML::Node p = t["pipelines"])
      if (Status s = ParsePipelinePatterns(file, p, &entry.pipelines); !s.ok()) return s;
    out->push_back(std::move(entry));
  }
  return Status::Ok();
}

// The pipelines patterns of a token or of an oidc.roles entry.
Status ParsePipelinePatterns(const std::string& file, const YAML::Node& p, std::vector<std::string>* out) {
  if (!p.IsSequence() || p.size() == 0)
    return Bad(file, p, "pipelines must be a non-empty list of pipeline name patterns, like "
                        "[\"retrain-*\"]; leave it out for every pipeline");
  for (const auto& pattern : p) {
    std::string text = pattern.as<std::string>();
    if (Status s = CheckPipelinePattern(text); !s.ok()) return Bad(file, pattern, s.message());
    out->push_back(text);
  }
  return Status::Ok();
}

// A role name of the config, or an error at `n`.
Status ParseRoleNode(const std::string& file, const YAML::Node& n, Role* role) {
  auto r = ParseRole(n.as<std::string>());
  if (!r) return Bad(file, n, "unknown role '" + n.as<std::string>() + "' (expected one of: viewer, runner, admin)");
  *role = *r;
  return Status::Ok();
}

// Whether `url` is http on a loopback address (allowed for an issuer in
// tests; every other issuer must be https).
bool LoopbackHttp(const std::string& url) {
  for (const char* prefix : {"http://127.", "http://localhost:", "http://localhost/", "http://[::1]"})
    if (url.rfind(prefix, 0) == 0) return true;
  return false;
}

// The `oidc:` section.
Status ParseOidc(const std::string& file, const YAML::Node& o, OidcConfig* out) {
  if (!o.IsMap()) return Bad(file, o, "oidc must be a mapping with issuer and clientID");
  if (Status s = CheckKeys(file, o,
                           {"issuer", "clientID", "clientSecretFile", "clientSecretEnv", "caFile",
                            "redirectURL", "scopes", "groupsClaim", "usernameClaim", "roles",
                            "defaultRole"},
                           "oidc");
      !s.ok())
    return s;
  if (!o["issuer"] || !o["clientID"]) return Bad(file, o, "oidc needs issuer and clientID");
  out->issuer = o["issuer"].as<std::string>();
  if (out->issuer.rfind("https://", 0) != 0 && !LoopbackHttp(out->issuer))
    return Bad(file, o["issuer"], "oidc.issuer must be an https:// URL");
  out->client_id = o["clientID"].as<std::string>();
  if (out->client_id.empty()) return Bad(file, o["clientID"], "oidc.clientID must not be empty");
  if (o["clientSecretFile"] && o["clientSecretEnv"])
    return Bad(file, o["clientSecretEnv"], "oidc takes clientSecretFile or clientSecretEnv, not both");
  if (YAML::Node n = o["clientSecretFile"]) {
    std::ifstream in(n.as<std::string>(), std::ios::binary);
    if (!in) return Bad(file, n, "cannot read oidc.clientSecretFile " + n.as<std::string>());
    std::stringstream ss;
    ss << in.rdbuf();
    out->client_secret = ss.str();
    while (!out->client_secret.empty() && std::isspace(static_cast<unsigned char>(out->client_secret.back())))
      out->client_secret.pop_back();
    if (out->client_secret.empty()) return Bad(file, n, "oidc.clientSecretFile " + n.as<std::string>() + " is empty");
  }
  if (YAML::Node n = o["clientSecretEnv"]) {
    const char* v = std::getenv(n.as<std::string>().c_str());
    if (v == nullptr || *v == '\0')
      return Bad(file, n, "environment variable " + n.as<std::string>() + " (oidc.clientSecretEnv) is not set");
    out->client_secret = v;
  }
  if (YAML::Node n = o["caFile"]) out->ca_file = n.as<std::string>();
  if (YAML::Node n = o["redirectURL"]) {
    out->redirect_url = n.as<std::string>();
    if (out->redirect_url.rfind("https://", 0) != 0 && out->redirect_url.rfind("http://", 0) != 0)
      return Bad(file, n, "oidc.redirectURL must be an http(s) URL ending in /auth/callback");
  }
  if (YAML::Node n = o["scopes"]) {
    if (!n.IsSequence()) return Bad(file, n, "oidc.scopes must be a list, like [openid, email, groups]");
    out->scopes.clear();
    for (const auto& sc : n) out->scopes.push_back(sc.as<std::string>());
  }
  if (YAML::Node n = o["groupsClaim"]) out->groups_claim = n.as<std::string>();
  if (YAML::Node n = o["usernameClaim"]) out->username_claim = n.as<std::string>();
  if (YAML::Node n = o["defaultRole"]) {
    Role role;
    if (Status s = ParseRoleNode(file, n, &role); !s.ok()) return s;
    out->default_role = role;
  }
  if (YAML::Node roles = o["roles"]) {
    if (!roles.IsSequence()) return Bad(file, roles, "oidc.roles must be a list of {group, role}");
    for (const auto& r : roles) {
      if (!r.IsMap()) return Bad(file, r, "an oidc.roles entry must be a mapping {group, role}");
      if (Status s = CheckKeys(file, r, {"group", "role", "pipelines"}, "an oidc.roles entry"); !s.ok()) return s;
      if (!r["group"] || !r["role"]) return Bad(file, r, "an oidc.roles entry needs group and role");
      OidcRoleMapping m;
      m.group = r["group"].as<std::string>();
      if (Status s = ParseRoleNode(file, r["role"], &m.role); !s.ok()) return s;
      if (r["pipelines"])
        if (Status s = ParsePipelinePatterns(file, r["pipelines"], &m.pipelines); !s.ok()) return s;
      out->roles.push_back(std::move(m));
    }
  }
  return Status::Ok();
}

Result<ServerConfig> ParseNode(const YAML::Node& root, const std::string& file) {
  ServerConfig config;
  if (!root || root.IsNull()) return config;
  if (!root.IsMap()) return Error(Bad(file, root, "the server config must be a mapping"));
  if (Status s = CheckKeys(file, root,
                           {"listen", "maxConcurrentRuns", "reloadInterval", "tokens", "webhooks",
                            "metrics", "historyLimit", "http", "artifacts", "store", "oidc"},
                           "the server config");
      !s.ok())
    return Error(s);
  if (auto n = root["listen"]) config.listen = n.as<std::string>();
  if (auto n = root["artifacts"]) {
    config.artifacts = n.as<std::string>();
    if (auto loc = ParseS3Location(config.artifacts); !loc)
      return Error(Bad(file, n, "invalid artifact store: " + loc.error().message()));
  }
  if (auto n = root["store"]) {
    config.store = n.as<std::string>();
    if (!IsPostgresUrl(config.store))
      return Error(Bad(file, n, "store must be a postgres:// or postgresql:// URL (a store directory is "
                                "given with serve --store)"));
  }
  if (auto n = root["maxConcurrentRuns"]) {
    config.max_concurrent_runs = n.as<int>();
    if (config.max_concurrent_runs < 1)
      return Error(Bad(file, n, "maxConcurrentRuns must be at least 1"));
  }
  if (auto n = root["historyLimit"]) {
    config.history_limit = n.as<int>();
    if (config.history_limit < 0)
      return Error(Bad(file, n, "historyLimit must be 0 (keep every run) or more"));
  }
  if (auto n = root["reloadInterval"]) {
    auto d = ParseSimpleDuration(n.as<std::string>());
    if (!d || d->count() <= 0)
      return Error(Bad(file, n, "reloadInterval '" + n.as<std::string>() +
                                    "' is not a duration like 500ms, 2s or 1m"));
    config.reload_interval = *d;
  }
  if (auto tokens = root["tokens"]) {
    if (Status s = ParseTokens(file, tokens, &config.tokens); !s.ok()) return Error(s);
  }
  if (auto hooks = root["webhooks"]) {
    if (Status s = CheckKeys(file, hooks, {"github", "gitlab"}, "webhooks"); !s.ok()) return Error(s);
    if (auto gh = hooks["github"]) {
      if (Status s = CheckKeys(file, gh, {"secret", "secretEnv"}, "webhooks.github"); !s.ok())
        return Error(s);
      if (gh["secret"]) config.github_secret = gh["secret"].as<std::string>();
      if (gh["secretEnv"]) {
        std::string name = gh["secretEnv"].as<std::string>();
        const char* v = std::getenv(name.c_str());
        if (v == nullptr || *v == '\0')
          return Error(Bad(file, gh["secretEnv"],
                           "environment variable " + name + " (webhooks.github.secretEnv) is not set"));
        config.github_secret = v;
      }
    }
    if (auto gl = hooks["gitlab"]) {
      if (Status s = CheckKeys(file, gl, {"tokenSha256"}, "webhooks.gitlab"); !s.ok())
        return Error(s);
      if (gl["tokenSha256"]) {
        config.gitlab_token_sha256 = gl["tokenSha256"].as<std::string>();
        if (!IsHex64(config.gitlab_token_sha256))
          return Error(Bad(file, gl["tokenSha256"],
                           "tokenSha256 must be 64 lower-case hex characters"));
      }
    }
  }
  if (auto h = root["http"]) {
    if (Status s = ParseHttpLimits(file, h, &config.http); !s.ok()) return Error(s);
  }
  if (auto o = root["oidc"]) {
    config.oidc.emplace();
    if (Status s = ParseOidc(file, o, &*config.oidc); !s.ok()) return Error(s);
  }
  if (auto m = root["metrics"]) {
    if (Status s = CheckKeys(file, m, {"requireAuth"}, "metrics"); !s.ok()) return Error(s);
    if (m["requireAuth"]) config.metrics_require_auth = m["requireAuth"].as<bool>();
  }
  return config;
}

}  // namespace

Result<ServerConfig> ParseServerConfig(std::string_view text, const std::string& file_name) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return ParseNode(root, file_name);
  } catch (const YAML::BadConversion& e) {
    return Error(Status::InvalidArgument(file_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                         std::to_string(e.mark.column + 1) +
                                         ": value has the wrong type"));
  } catch (const YAML::Exception& e) {
    return Error(Status::InvalidArgument(file_name + ":" + std::to_string(e.mark.line + 1) + ":" +
                                         std::to_string(e.mark.column + 1) + ": " + e.msg));
  }
}

Result<ServerConfig> LoadServerConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error(Status::NotFound(path + ": cannot read the server config; check --config"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseServerConfig(ss.str(), path);
}

std::string HashToken(std::string_view token) { return Sha256Hex(token); }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

TokenAuthenticator::TokenAuthenticator(std::vector<TokenEntry> tokens) : tokens_(std::move(tokens)) {}

std::optional<Identity> TokenAuthenticator::Authenticate(std::string_view header) const {
  constexpr std::string_view kPrefix = "Bearer ";
  if (header.size() <= kPrefix.size() || header.substr(0, kPrefix.size()) != kPrefix)
    return std::nullopt;
  std::string presented = HashToken(header.substr(kPrefix.size()));
  const TokenEntry* match = nullptr;
  for (const TokenEntry& t : tokens_)
    if (ConstantTimeEquals(presented, t.sha256_hex) && !match) match = &t;
  if (!match) return std::nullopt;
  return Identity{match->name, match->role, match->pipelines};
}

}  // namespace sluice::server
