#include "engine/server/oidc.h"

#include <httplib.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <ctime>

#include "engine/base64.h"
#include "engine/text.h"

namespace sluice::server {
namespace {

using PkeyPtr = std::shared_ptr<EVP_PKEY>;

Status Unauth(const std::string& what) { return Status::Unauthenticated("the ID token" + what); }

// A JSON object parsed from `text`, or nullopt (never throws).
std::optional<Json> ParseObject(std::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

std::string StringMember(const Json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// An RSA public key from the JWK members n and e (base64url, big-endian).
Result<PkeyPtr> RsaKey(const std::string& n_b64, const std::string& e_b64) {
  auto n = Base64UrlDecode(n_b64, "JWK member n");
  if (!n) return Error(n.error());
  auto e = Base64UrlDecode(e_b64, "JWK member e");
  if (!e) return Error(e.error());
  if (n->size() < 256 || n->size() > 1024)
    return Error(Status::InvalidArgument("JWK RSA modulus of " + std::to_string(n->size() * 8) +
                                         " bits (2048 to 8192 accepted)"));
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY_CTX* ctx = nullptr;
  EVP_PKEY* pkey = nullptr;
  if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
      (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr &&
      (ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr)) != nullptr &&
      EVP_PKEY_fromdata_init(ctx) > 0)
    (void)EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  if (!pkey) return Error(Status::InvalidArgument("JWK RSA key rejected by OpenSSL"));
  return PkeyPtr(pkey, EVP_PKEY_free);
}

// A P-256 public key from the JWK members x and y (32 bytes each).
Result<PkeyPtr> P256Key(const std::string& x_b64, const std::string& y_b64) {
  auto x = Base64UrlDecode(x_b64, "JWK member x");
  if (!x) return Error(x.error());
  auto y = Base64UrlDecode(y_b64, "JWK member y");
  if (!y) return Error(y.error());
  if (x->size() != 32 || y->size() != 32)
    return Error(Status::InvalidArgument("JWK P-256 coordinates must be 32 bytes each"));
  std::string point = "\x04" + *x + *y;
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end()};
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* pkey = nullptr;
  if (ctx && EVP_PKEY_fromdata_init(ctx) > 0) (void)EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  if (!pkey) return Error(Status::InvalidArgument("JWK P-256 key rejected by OpenSSL (not a point on the curve)"));
  return PkeyPtr(pkey, EVP_PKEY_free);
}

// ES256's raw r||s signature as the DER ECDSA-Sig-Value OpenSSL verifies.
std::optional<std::string> EcdsaRawToDer(const std::string& raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

// Whether `signature` is `key`'s SHA-256 signature of `data`.
bool VerifySignature(const Jwk& key, std::string_view data, const std::string& signature) {
  std::string sig = signature;
  if (key.alg == "ES256") {
    auto der = EcdsaRawToDer(signature);
    if (!der) return false;
    sig = *der;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key.key.get()) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// The token's three parts; nullopt unless there are exactly three.
std::optional<std::array<std::string_view, 3>> SplitJws(std::string_view token) {
  size_t a = token.find('.');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = token.find('.', a + 1);
  if (b == std::string_view::npos || token.find('.', b + 1) != std::string_view::npos) return std::nullopt;
  return std::array<std::string_view, 3>{token.substr(0, a), token.substr(a + 1, b - a - 1), token.substr(b + 1)};
}

// A numeric claim (JSON number, seconds), or nullopt.
std::optional<int64_t> TimeClaim(const Json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number()) return std::nullopt;
  return static_cast<int64_t>(it->get<double>());
}

}  // namespace

std::string Base64UrlEncode(std::string_view data) {
  std::string s = Base64Encode(data);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

Result<std::string> Base64UrlDecode(std::string_view text, const std::string& what) {
  std::string s;
  s.reserve(text.size() + 2);
  for (char c : text) {
    if (c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r' || c == ' ')
      return Error(Status::InvalidArgument(what + " is not base64url (unexpected character '" +
                                           std::string(1, c) + "')"));
    s.push_back(c == '-' ? '+' : c == '_' ? '/' : c);
  }
  if (s.size() % 4 == 1) return Error(Status::InvalidArgument(what + " is not base64url (bad length)"));
  while (s.size() % 4 != 0) s.push_back('=');
  return Base64Decode(s, what);
}

Result<std::vector<Jwk>> ParseJwks(std::string_view json) {
  if (json.size() > kMaxJwksBytes)
    return Error(Status::InvalidArgument("the JWKS is " + std::to_string(json.size()) + " bytes; at most " +
                                         std::to_string(kMaxJwksBytes) + " are accepted"));
  auto doc = ParseObject(json);
  if (!doc || !doc->contains("keys") || !(*doc)["keys"].is_array())
    return Error(Status::InvalidArgument("the JWKS is not a JSON object with a \"keys\" list"));
  const Json& keys = (*doc)["keys"];
  if (keys.size() > kMaxJwksKeys)
    return Error(Status::InvalidArgument("the JWKS has " + std::to_string(keys.size()) + " keys; at most " +
                                         std::to_string(kMaxJwksKeys) + " are accepted"));
  std::vector<Jwk> out;
  for (const Json& k : keys) {
    if (!k.is_object() || StringMember(k, "use") == "enc") continue;
    std::string kty = StringMember(k, "kty"), alg = StringMember(k, "alg");
    Jwk jwk;
    jwk.kid = StringMember(k, "kid");
    if (kty == "RSA" && (alg.empty() || alg == "RS256")) {
      auto key = RsaKey(StringMember(k, "n"), StringMember(k, "e"));
      if (!key) return Error(key.error().WithContext("key '" + jwk.kid + "' of the JWKS"));
      jwk.alg = "RS256";
      jwk.key = *key;
    } else if (kty == "EC" && StringMember(k, "crv") == "P-256" && (alg.empty() || alg == "ES256")) {
      auto key = P256Key(StringMember(k, "x"), StringMember(k, "y"));
      if (!key) return Error(key.error().WithContext("key '" + jwk.kid + "' of the JWKS"));
      jwk.alg = "ES256";
      jwk.key = *key;
    } else {
      continue;
    }
    out.push_back(std::move(jwk));
  }
  return out;
}

Result<JwtHeader> ParseJwtHeader(std::string_view token) {
  if (token.size() > kMaxIdTokenBytes)
    return Error(Unauth(" is " + std::to_string(token.size()) + " bytes; at most " +
                        std::to_string(kMaxIdTokenBytes) + " are accepted"));
  auto parts = SplitJws(token);
  if (!parts) return Error(Unauth(" is not a JWT (three base64url parts separated by '.')"));
  auto text = Base64UrlDecode((*parts)[0], "the ID token's header");
  auto header = text ? ParseObject(*text) : std::nullopt;
  if (!header) return Error(Unauth("'s header is not base64url JSON"));
  JwtHeader h{StringMember(*header, "alg"), StringMember(*header, "kid")};
  if (h.alg != "RS256" && h.alg != "ES256")
    return Error(Unauth(" is signed with alg '" + h.alg.substr(0, 16) + "'; only RS256 and ES256 are accepted"));
  return h;
}

Result<Json> VerifyIdToken(std::string_view token, const Jwk& key, const IdTokenCheck& check) {
  auto header = ParseJwtHeader(token);
  if (!header) return Error(header.error());
  if (header->alg != key.alg)
    return Error(Unauth(" is signed with " + header->alg + " but its key '" + key.kid + "' is " + key.alg));
  auto parts = *SplitJws(token);
  auto signature = Base64UrlDecode(parts[2], "the ID token's signature");
  if (!signature) return Error(Unauth("'s signature is not base64url"));
  std::string_view signed_part = token.substr(0, parts[0].size() + 1 + parts[1].size());
  if (!VerifySignature(key, signed_part, *signature)) return Error(Unauth("'s signature does not verify"));
  auto payload = Base64UrlDecode(parts[1], "the ID token's payload");
  auto claims = payload ? ParseObject(*payload) : std::nullopt;
  if (!claims) return Error(Unauth("'s payload is not base64url JSON"));
  std::string iss = StringMember(*claims, "iss");
  if (iss != check.issuer)
    return Error(Unauth(" was issued by '" + iss.substr(0, 200) + "', not the configured issuer '" + check.issuer + "'"));
  bool aud_ok = false;
  if (auto it = claims->find("aud"); it != claims->end()) {
    if (it->is_string()) aud_ok = it->get<std::string>() == check.client_id;
    if (it->is_array())
      for (const Json& a : *it) aud_ok = aud_ok || (a.is_string() && a.get<std::string>() == check.client_id);
  }
  if (!aud_ok) return Error(Unauth("'s audience does not contain the client id '" + check.client_id + "'"));
  auto exp = TimeClaim(*claims, "exp"), iat = TimeClaim(*claims, "iat"), nbf = TimeClaim(*claims, "nbf");
  if (!exp || !iat) return Error(Unauth(" has no numeric exp and iat claims"));
  if (check.now > *exp + check.skew_seconds)
    return Error(Unauth(" expired " + std::to_string(check.now - *exp) + "s ago"));
  if (nbf && check.now + check.skew_seconds < *nbf)
    return Error(Unauth(" is not valid for another " + std::to_string(*nbf - check.now) + "s (nbf)"));
  if (check.now + check.skew_seconds < *iat)
    return Error(Unauth(" was issued " + std::to_string(*iat - check.now) + "s in the future (iat)"));
  return *claims;
}

Result<Identity> MapGroups(const OidcConfig& config, const std::string& name,
                           const std::vector<std::string>& groups) {
  std::optional<Role> best;
  std::vector<std::string> pipelines;
  bool unscoped = false;
  for (const OidcRoleMapping& m : config.roles) {
    if (std::find(groups.begin(), groups.end(), m.group) == groups.end()) continue;
    if (!best || m.role > *best) {
      best = m.role;
      pipelines.clear();
      unscoped = false;
    }
    if (m.role != *best) continue;
    if (m.pipelines.empty()) unscoped = true;
    pipelines.insert(pipelines.end(), m.pipelines.begin(), m.pipelines.end());
  }
  if (!best) {
    if (!config.default_role)
    {
      std::string list;
      for (size_t i = 0; i < groups.size() && i < 10; ++i) list += (i ? ", " : "") + groups[i].substr(0, 64);
      if (groups.size() > 10) list += ", ...";
      return Error(Status::PermissionDenied("'" + name + "' is in no group that oidc.roles maps to a role (its '" +
                                            config.groups_claim + "' claim: " + (list.empty() ? "none" : list) +
                                            "), and oidc has no defaultRole"));
    }
    return Identity{name, *config.default_role, {}};
  }
  if (unscoped) pipelines.clear();
  return Identity{name, *best, pipelines};
}

OidcVerifier::OidcVerifier(OidcConfig config, Options options, OidcFetch fetch)
    : config_(std::move(config)),
      options_(std::move(options)),
      fetch_(fetch ? std::move(fetch) : HttpsFetch(config_.ca_file)) {}

int64_t OidcVerifier::Now() const { return options_.now ? options_.now() : static_cast<int64_t>(std::time(nullptr)); }

Status OidcVerifier::DiscoverLocked() {
  if (endpoints_) return Status::Ok();
  // A failed discovery is retried at most once per interval: /auth/login is
  // open, and must not turn each request into a fetch while the issuer is down.
  auto now = std::chrono::steady_clock::now();
  if (!last_discovery_error_.ok() && now - last_discovery_ < options_.min_refetch_interval)
    return last_discovery_error_;
  last_discovery_ = now;
  last_discovery_error_ = DiscoverOnceLocked();
  return last_discovery_error_;
}

Status OidcVerifier::DiscoverOnceLocked() {
  std::string base = config_.issuer;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url = base + "/.well-known/openid-configuration";
  auto body = fetch_(url, "", kMaxDiscoveryBytes);
  if (!body) return body.error().WithContext("OIDC discovery");
  auto doc = ParseObject(*body);
  if (!doc) return Status::Unavailable("OIDC discovery: " + url + " is not a JSON object");
  if (StringMember(*doc, "issuer") != config_.issuer)
    return Status::Unavailable("OIDC discovery: " + url + " names the issuer '" +
                               StringMember(*doc, "issuer").substr(0, 200) + "', not '" + config_.issuer + "'");
  OidcEndpoints e{StringMember(*doc, "authorization_endpoint"), StringMember(*doc, "token_endpoint"),
                  StringMember(*doc, "jwks_uri")};
  if (e.jwks.empty()) return Status::Unavailable("OIDC discovery: " + url + " has no jwks_uri");
  endpoints_ = e;
  return Status::Ok();
}

Status OidcVerifier::FetchKeysLocked() {
  auto now = std::chrono::steady_clock::now();
  if (fetched_once_ && now - last_fetch_ < options_.min_refetch_interval) return Status::Ok();
  fetched_once_ = true;
  last_fetch_ = now;
  if (Status s = DiscoverLocked(); !s.ok()) return s;
  auto body = fetch_(endpoints_->jwks, "", kMaxJwksBytes);
  if (!body) return body.error().WithContext("OIDC keys");
  auto keys = ParseJwks(*body);
  if (!keys) return Status::Unavailable("OIDC keys from " + endpoints_->jwks + ": " + keys.error().message());
  keys_ = std::move(*keys);
  return Status::Ok();
}

Result<Json> OidcVerifier::Verify(std::string_view token) {
  auto header = ParseJwtHeader(token);
  if (!header) return Error(header.error());
  std::optional<Jwk> key;
  {
    std::lock_guard lock(mu_);
    auto find = [&]() -> std::optional<Jwk> {
      for (const Jwk& k : keys_)
        if (k.kid == header->kid && k.alg == header->alg) return k;
      return std::nullopt;
    };
    key = find();
    if (!key) {
      if (Status s = FetchKeysLocked(); !s.ok()) return Error(s);
      key = find();
    }
  }
  if (!key) return Error(Unauth(" names the key '" + header->kid.substr(0, 64) + "', which the issuer's JWKS does not have"));
  return VerifyIdToken(token, *key, {config_.issuer, config_.client_id, Now(), options_.skew_seconds});
}

Result<Identity> OidcVerifier::Authenticate(std::string_view token) {
  auto claims = Verify(token);
  if (!claims) return Error(claims.error());
  std::string name = StringMember(*claims, config_.username_claim.c_str());
  if (name.empty())
    return Error(Unauth(" has no string claim '" + config_.username_claim + "' (oidc.usernameClaim)"));
  std::vector<std::string> groups;
  if (auto it = claims->find(config_.groups_claim); it != claims->end()) {
    if (it->is_string()) groups.push_back(it->get<std::string>());
    if (it->is_array())
      for (const Json& g : *it)
        if (g.is_string()) groups.push_back(g.get<std::string>());
  }
  return MapGroups(config_, name, groups);
}

Result<OidcEndpoints> OidcVerifier::Endpoints() {
  std::lock_guard lock(mu_);
  if (Status s = DiscoverLocked(); !s.ok()) return Error(s);
  return *endpoints_;
}

Result<std::string> OidcVerifier::ExchangeCode(const std::string& code, const std::string& code_verifier) {
  auto endpoints = Endpoints();
  if (!endpoints) return Error(endpoints.error());
  std::string form = "grant_type=authorization_code&code=" + UrlEncode(code) +
                     "&redirect_uri=" + UrlEncode(config_.redirect_url) +
                     "&client_id=" + UrlEncode(config_.client_id) + "&code_verifier=" + UrlEncode(code_verifier);
  if (!config_.client_secret.empty()) form += "&client_secret=" + UrlEncode(config_.client_secret);
  auto body = fetch_(endpoints->token, form, kMaxDiscoveryBytes);
  if (!body)
    return Error(Status::Unauthenticated("the issuer refused the authorization code: " + body.error().message()));
  auto doc = ParseObject(*body);
  std::string id_token = doc ? StringMember(*doc, "id_token") : "";
  if (id_token.empty()) return Error(Status::Unauthenticated("the issuer's token answer has no id_token"));
  if (auto claims = Verify(id_token); !claims) return Error(claims.error());
  return id_token;
}

OidcFetch HttpsFetch(const std::string& ca_file) {
  return [ca_file](const std::string& url, const std::string& form, size_t max_bytes) -> Result<std::string> {
    size_t scheme_end = url.find("://");
    size_t path_start = scheme_end == std::string::npos ? std::string::npos : url.find('/', scheme_end + 3);
    if (path_start == std::string::npos) path_start = url.size();
    std::string origin = url.substr(0, path_start), path = path_start < url.size() ? url.substr(path_start) : "/";
    httplib::Client client(origin);
    if (!client.is_valid()) return Error(Status::Unavailable(url + " is not an http(s) URL"));
    client.set_connection_timeout(10);
    client.set_read_timeout(10);
    client.set_write_timeout(10);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
    client.enable_server_certificate_verification(true);
    if (!ca_file.empty()) client.set_ca_cert_path(ca_file.c_str());
#endif
    std::string body;
    bool too_big = false;
    httplib::Request req;
    auto receive = [&](const char* data, size_t n) {
      if (body.size() + n > max_bytes) {
        too_big = true;
        return false;
      }
      body.append(data, n);
      return true;
    };
    auto send = [&]() -> httplib::Result {
      if (form.empty()) return client.Get(path.c_str(), receive);
      req.method = "POST";
      req.path = path;
      req.set_header("Content-Type", "application/x-www-form-urlencoded");
      req.set_header("Accept", "application/json");
      req.body = form;
      req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) { return receive(data, n); };
      return client.send(req);
    };
    httplib::Result res = send();
    if (too_big)
      return Error(Status::Unavailable(url + " answered more than " + std::to_string(max_bytes) + " bytes"));
    if (!res) return Error(Status::Unavailable(url + ": " + httplib::to_string(res.error())));
    if (res->status != 200)
      return Error(Status::Unavailable(url + " answered HTTP " + std::to_string(res->status)));
    return body;
  };
}

std::string RandomUrlToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) std::abort();  // no randomness: nothing safe to do
  return Base64UrlEncode(std::string_view(reinterpret_cast<char*>(bytes), sizeof bytes));
}

std::string PkceChallenge(std::string_view verifier) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), digest);
  return Base64UrlEncode(std::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

std::string AuthorizationUrl(const OidcEndpoints& endpoints, const OidcConfig& config,
                             const std::string& state, const std::string& code_challenge) {
  std::string scopes;
  for (const std::string& sc : config.scopes) scopes += (scopes.empty() ? "" : " ") + sc;
  return endpoints.authorization + (endpoints.authorization.find('?') == std::string::npos ? "?" : "&") +
         "response_type=code&client_id=" + UrlEncode(config.client_id) +
         "&redirect_uri=" + UrlEncode(config.redirect_url) + "&scope=" + UrlEncode(scopes) +
         "&state=" + UrlEncode(state) + "&code_challenge=" + UrlEncode(code_challenge) +
         "&code_challenge_method=S256";
}

std::string CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t end = header.find(';');
    std::string_view part = header.substr(0, end);
    header = end == std::string_view::npos ? std::string_view() : header.substr(end + 1);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=')
      return std::string(part.substr(name.size() + 1));
  }
  return "";
}

}  // namespace sluice::server
