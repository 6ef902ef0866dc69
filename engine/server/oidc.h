#pragma once
// OpenID Connect identities for `sluice serve`: ID tokens from the
// configured issuer (the server config's `oidc:`, OidcConfig in
// engine/server/config.h) are verified here and turned into an Identity
// whose role comes from the token's groups.
//
//  - Discovery: `<issuer>/.well-known/openid-configuration` gives the JWKS,
//    authorization and token endpoints. Fetched over HTTPS verified against
//    the config's caFile (or the system's CAs); plain http only for a
//    loopback issuer.
//  - Keys: the JWKS is cached; a token whose `kid` is not in it makes one
//    refetch, at most once per OidcVerifier::Options::min_refetch_interval,
//    so a flood of made-up key ids does not become a flood of fetches.
//  - Tokens: RS256 and ES256 only (never `none`, never HMAC), signature
//    checked with OpenSSL; then iss, aud (must contain the client id), exp,
//    nbf and iat with a small clock skew.
//  - Roles: each of the token's groups (OidcConfig::groups_claim) that the
//    config's `roles:` maps gives a role; the highest one wins. No mapped
//    group and no default role: kPermissionDenied (403).
//
// Every size is bounded (token, discovery document, JWKS, number of keys);
// going past a bound is an error that names it. Tokens and the client
// secret never appear in an error message.

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json_text.h"
#include "engine/server/authz.h"
#include "engine/server/config.h"
#include "engine/status.h"

namespace sluice::server {

// Bounds on what an issuer or a client may hand the server.
inline constexpr size_t kMaxIdTokenBytes = 16 * 1024;
inline constexpr size_t kMaxDiscoveryBytes = 64 * 1024;
inline constexpr size_t kMaxJwksBytes = 64 * 1024;
inline constexpr size_t kMaxJwksKeys = 32;

// One verification key of a JWKS. Copied freely (the key is shared).
struct Jwk {
  std::string kid;  // may be empty
  std::string alg;  // "RS256" or "ES256"
  std::shared_ptr<EVP_PKEY> key;
};

// Parses a JWKS document ({"keys": [...]}). Keys that cannot verify an ID
// token (use "enc", kty other than RSA or EC P-256, alg other than RS256 or
// ES256) are skipped. Errors: kInvalidArgument for a document over
// kMaxJwksBytes, more than kMaxJwksKeys keys, text that is not a JWKS, or a
// usable key whose members are not valid base64url.
Result<std::vector<Jwk>> ParseJwks(std::string_view json);

// The header of a JWT: its alg and kid. Errors: kUnauthenticated, as
// VerifyIdToken.
struct JwtHeader {
  std::string alg;
  std::string kid;
};
Result<JwtHeader> ParseJwtHeader(std::string_view token);

// What an ID token's claims must satisfy.
struct IdTokenCheck {
  std::string issuer;     // `iss` must equal it
  std::string client_id;  // `aud` (a string or a list) must contain it
  int64_t now = 0;        // seconds since the epoch
  int64_t skew_seconds = 60;
};

// Verifies `token` (compact JWS) with `key` and checks its claims; returns
// the claims. Errors (kUnauthenticated), each naming what is wrong and never
// the token: too large, not three base64url parts, header or payload not a
// JSON object, alg not RS256/ES256 or not the key's, bad signature, wrong
// iss, aud without the client id, expired, not yet valid, issued in the
// future, missing exp or iat.
Result<Json> VerifyIdToken(std::string_view token, const Jwk& key, const IdTokenCheck& check);

// base64url without padding (RFC 7515), as JWTs and PKCE use it.
std::string Base64UrlEncode(std::string_view data);
// Decodes unpadded base64url. Errors: kInvalidArgument naming `what`.
Result<std::string> Base64UrlDecode(std::string_view text, const std::string& what);

// The role and scope that `groups` map to under `config` (its `roles:` and
// defaultRole), with the identity named `name`. Errors: kPermissionDenied
// saying that no group is mapped.
Result<Identity> MapGroups(const OidcConfig& config, const std::string& name,
                           const std::vector<std::string>& groups);

// Fetches `url` (GET when `form` is empty, else a POST of that
// application/x-www-form-urlencoded body) and returns the body of a 200
// answer, at most `max_bytes` of it. Errors: kUnavailable (unreachable,
// TLS failure, another status, a body over max_bytes).
using OidcFetch = std::function<Result<std::string>(const std::string& url, const std::string& form,
                                                    size_t max_bytes)>;

// The issuer's endpoints, from its discovery document.
struct OidcEndpoints {
  std::string authorization;
  std::string token;
  std::string jwks;
};

// Verifies ID tokens of one issuer and maps them to identities. Thread-safe:
// the discovery document and keys are cached under a mutex.
class OidcVerifier {
 public:
  struct Options {
    // Least time between two JWKS (or discovery) fetches that a token with
    // an unknown key id, or a failed discovery, may cause.
    std::chrono::milliseconds min_refetch_interval{30000};
    int64_t skew_seconds = 60;
    // Seconds since the epoch; empty = the system clock.
    std::function<int64_t()> now;
  };

  // `fetch` empty: HTTPS with cpp-httplib, verified against config.ca_file.
  OidcVerifier(OidcConfig config, Options options, OidcFetch fetch = nullptr);

  // The identity of a verified `token`. Errors: kUnauthenticated (invalid,
  // expired, unknown key), kPermissionDenied (no mapped group),
  // kUnavailable (the issuer could not be reached).
  Result<Identity> Authenticate(std::string_view token);

  // The verified claims of `token` (no role mapping). Errors as
  // Authenticate's, less kPermissionDenied.
  Result<Json> Verify(std::string_view token);

  // The endpoints, discovering them if not done yet. Errors: kUnavailable.
  Result<OidcEndpoints> Endpoints();

  // Exchanges an authorization code (with its PKCE verifier) at the token
  // endpoint and returns the ID token, verified. Errors: kUnauthenticated
  // (the issuer refused the code, or the token does not verify),
  // kUnavailable.
  Result<std::string> ExchangeCode(const std::string& code, const std::string& code_verifier);

  const OidcConfig& config() const { return config_; }

 private:
  // The endpoints, discovered once; a failure is remembered (and answered)
  // for min_refetch_interval.
  Status DiscoverLocked();
  Status DiscoverOnceLocked();
  Status FetchKeysLocked();
  int64_t Now() const;

  const OidcConfig config_;
  const Options options_;
  const OidcFetch fetch_;
  std::mutex mu_;
  std::optional<OidcEndpoints> endpoints_;
  std::vector<Jwk> keys_;
  std::chrono::steady_clock::time_point last_fetch_{};
  std::chrono::steady_clock::time_point last_discovery_{};
  Status last_discovery_error_;
  bool fetched_once_ = false;
};

// The default fetcher: cpp-httplib over HTTPS with certificate
// verification against `ca_file` ("" = the system's CAs), 10s timeouts.
OidcFetch HttpsFetch(const std::string& ca_file);

// A random value for `state` and PKCE's code_verifier: 32 random bytes,
// base64url (43 characters).
std::string RandomUrlToken();

// PKCE's S256 code_challenge of `verifier`.
std::string PkceChallenge(std::string_view verifier);

// The issuer's authorization URL for a code flow with PKCE (S256): the
// config's client id, redirect URL and scopes, `state` and the challenge.
std::string AuthorizationUrl(const OidcEndpoints& endpoints, const OidcConfig& config,
                             const std::string& state, const std::string& code_challenge);

// The value of cookie `name` in a Cookie header, or "".
std::string CookieValue(std::string_view cookie_header, std::string_view name);

// The session cookie of the web UI's OIDC login: the ID token itself, so any
// replica that trusts the issuer accepts it (no server-side session).
inline constexpr char kSessionCookie[] = "sluice_session";
// The login's state and PKCE verifier between /auth/login and
// /auth/callback ("<state>.<verifier>").
inline constexpr char kLoginCookie[] = "sluice_login";
// A write authenticated by the session cookie must carry this header (any
// non-empty value): a page of another site cannot set it without a CORS
// preflight, which the server never grants.
inline constexpr char kCsrfHeader[] = "X-Sluice-CSRF";

}  // namespace sluice::server
