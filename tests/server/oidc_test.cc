// ID token verification (engine/server/oidc.h) with keys made here by
// OpenSSL: each reason a token is refused, with its exact message; the
// JWKS parser's limits; key rotation and the refetch rate limit; the
// mapping of groups to roles; and the `oidc:` section of the server config.
#include "engine/server/oidc.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <map>

#include "engine/server/config.h"

namespace sluice::server {
namespace {

constexpr char kIssuer[] = "https://issuer.test";
constexpr char kClient[] = "sluice";
constexpr int64_t kNow = 1800000000;

std::string Bytes(const BIGNUM* bn) {
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// A signing key made for the test and its public JWK.
struct TestKey {
  std::string kid;
  std::string alg;  // RS256 | ES256
  std::shared_ptr<EVP_PKEY> key;

  static TestKey Make(const std::string& kid, const std::string& alg) {
    EVP_PKEY* k = alg == "RS256" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                                 : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    return {kid, alg, std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free)};
  }

  Json Jwk() const {
    if (alg == "RS256") {
      BIGNUM *n = nullptr, *e = nullptr;
      EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_N, &n);
      EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_E, &e);
      Json j = {{"kty", "RSA"}, {"kid", kid}, {"alg", alg}, {"use", "sig"},
                {"n", Base64UrlEncode(Bytes(n))}, {"e", Base64UrlEncode(Bytes(e))}};
      BN_free(n);
      BN_free(e);
      return j;
    }
    unsigned char point[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &len);
    std::string p(reinterpret_cast<char*>(point), len);
    return {{"kty", "EC"}, {"crv", "P-256"}, {"kid", kid}, {"alg", alg},
            {"x", Base64UrlEncode(p.substr(1, 32))}, {"y", Base64UrlEncode(p.substr(33, 32))}};
  }

  // A compact JWS of `claims` with this key (header alg/kid as given).
  std::string Sign(const Json& claims, std::string header_alg = "") const {
    Json header = {{"alg", header_alg.empty() ? alg : header_alg}, {"kid", kid}, {"typ", "JWT"}};
    std::string input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key.get());
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    if (alg == "ES256") {  // DER to JOSE's raw r||s
      const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
      ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
      std::string raw(64, '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
      BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
      ECDSA_SIG_free(es);
      sig = raw;
    }
    return input + "." + Base64UrlEncode(sig);
  }
};

Json Claims() {
  return {{"iss", kIssuer}, {"aud", kClient}, {"sub", "u1"}, {"email", "ada@example.com"},
          {"groups", {"ml", "everyone"}}, {"iat", kNow - 10}, {"exp", kNow + 3600}};
}

Jwk ParsedKey(const TestKey& k) {
  auto keys = ParseJwks(Json{{"keys", {k.Jwk()}}}.dump());
  EXPECT_TRUE(keys) << keys.error().ToString();
  EXPECT_EQ(keys->size(), 1u);
  return keys->at(0);
}

const IdTokenCheck kCheck{kIssuer, kClient, kNow, 60};

// The error of verifying `token` with `key`, or "ok".
std::string Refusal(const std::string& token, const Jwk& key) {
  auto r = VerifyIdToken(token, key, kCheck);
  return r ? "ok" : r.error().ToString();
}

TEST(OidcTokenTest, AcceptsRs256AndEs256) {
  for (const char* alg : {"RS256", "ES256"}) {
    TestKey k = TestKey::Make("k1", alg);
    auto claims = VerifyIdToken(k.Sign(Claims()), ParsedKey(k), kCheck);
    ASSERT_TRUE(claims) << alg << ": " << claims.error().ToString();
    EXPECT_EQ((*claims)["email"], "ada@example.com");
  }
  // aud may be a list.
  TestKey k = TestKey::Make("k1", "RS256");
  Json c = Claims();
  c["aud"] = {"other", kClient};
  EXPECT_EQ(Refusal(k.Sign(c), ParsedKey(k)), "ok");
}

TEST(OidcTokenTest, RefusesEachWayATokenCanBeWrong) {
  TestKey k = TestKey::Make("k1", "RS256");
  Jwk key = ParsedKey(k);
  std::string good = k.Sign(Claims());
  auto with = [&](const char* name, Json value) {
    Json c = Claims();
    if (value.is_null()) c.erase(name); else c[name] = value;
    return Refusal(k.Sign(c), key);
  };
  // A flipped byte of the signature.
  std::string tampered = good;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Refusal(tampered, key), "UNAUTHENTICATED: the ID token's signature does not verify");
  // Another key's signature under this key's id.
  TestKey other = TestKey::Make("k1", "RS256");
  EXPECT_EQ(Refusal(other.Sign(Claims()), key), "UNAUTHENTICATED: the ID token's signature does not verify");
  // A changed payload under the old signature.
  size_t dot1 = good.find('.'), dot2 = good.rfind('.');
  Json changed = Claims();
  changed["groups"] = {"ml-admins"};
  EXPECT_EQ(Refusal(good.substr(0, dot1 + 1) + Base64UrlEncode(changed.dump()) + good.substr(dot2), key),
            "UNAUTHENTICATED: the ID token's signature does not verify");
  // alg none (no signature) and HMAC.
  std::string none = Base64UrlEncode(R"({"alg":"none","kid":"k1"})") + "." + Base64UrlEncode(Claims().dump()) + ".";
  EXPECT_EQ(Refusal(none, key), "UNAUTHENTICATED: the ID token is signed with alg 'none'; only RS256 and ES256 are accepted");
  EXPECT_EQ(Refusal(k.Sign(Claims(), "HS256"), key),
            "UNAUTHENTICATED: the ID token is signed with alg 'HS256'; only RS256 and ES256 are accepted");
  EXPECT_EQ(Refusal(k.Sign(Claims(), "ES256"), key),
            "UNAUTHENTICATED: the ID token is signed with ES256 but its key 'k1' is RS256");
  EXPECT_EQ(with("iss", "https://evil.test"),
            "UNAUTHENTICATED: the ID token was issued by 'https://evil.test', not the configured issuer 'https://issuer.test'");
  EXPECT_EQ(with("aud", "another-client"),
            "UNAUTHENTICATED: the ID token's audience does not contain the client id 'sluice'");
  EXPECT_EQ(with("aud", Json::array({"a", "b"})),
            "UNAUTHENTICATED: the ID token's audience does not contain the client id 'sluice'");
  EXPECT_EQ(with("exp", kNow - 61), "UNAUTHENTICATED: the ID token expired 61s ago");
  EXPECT_EQ(with("exp", kNow - 59), "ok");  // within the skew
  EXPECT_EQ(with("nbf", kNow + 600), "UNAUTHENTICATED: the ID token is not valid for another 600s (nbf)");
  EXPECT_EQ(with("iat", kNow + 300), "UNAUTHENTICATED: the ID token was issued 300s in the future (iat)");
  EXPECT_EQ(with("exp", nullptr), "UNAUTHENTICATED: the ID token has no numeric exp and iat claims");
  EXPECT_EQ(with("iat", "yesterday"), "UNAUTHENTICATED: the ID token has no numeric exp and iat claims");
  EXPECT_EQ(Refusal("abc.def", key), "UNAUTHENTICATED: the ID token is not a JWT (three base64url parts separated by '.')");
  EXPECT_EQ(Refusal("a.b.c.d", key), "UNAUTHENTICATED: the ID token is not a JWT (three base64url parts separated by '.')");
  EXPECT_EQ(Refusal("e30+.e30.e30", key), "UNAUTHENTICATED: the ID token's header is not base64url JSON");
  EXPECT_EQ(Refusal(std::string(kMaxIdTokenBytes + 1, 'a'), key),
            "UNAUTHENTICATED: the ID token is 16385 bytes; at most 16384 are accepted");
  std::string bad_payload = good.substr(0, dot1 + 1) + Base64UrlEncode("[1]") + good.substr(dot2);
  EXPECT_EQ(Refusal(bad_payload, key), "UNAUTHENTICATED: the ID token's signature does not verify");
}

TEST(OidcJwksTest, SkipsKeysItCannotUseAndBoundsTheDocument) {
  TestKey rsa = TestKey::Make("r", "RS256"), ec = TestKey::Make("e", "ES256");
  Json enc = rsa.Jwk();
  enc["use"] = "enc";
  Json hmac = {{"kty", "oct"}, {"k", "c2VjcmV0"}};
  auto keys = ParseJwks(Json{{"keys", {rsa.Jwk(), ec.Jwk(), enc, hmac}}}.dump());
  ASSERT_TRUE(keys) << keys.error().ToString();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ(keys->at(0).alg, "RS256");
  EXPECT_EQ(keys->at(1).alg, "ES256");
  Json many = {{"keys", Json::array()}};
  for (int i = 0; i < 33; ++i) many["keys"].push_back(hmac);
  EXPECT_EQ(ParseJwks(many.dump()).error().ToString(),
            "INVALID_ARGUMENT: the JWKS has 33 keys; at most 32 are accepted");
  EXPECT_EQ(ParseJwks(std::string(kMaxJwksBytes + 1, ' ')).error().ToString(),
            "INVALID_ARGUMENT: the JWKS is 65537 bytes; at most 65536 are accepted");
  EXPECT_EQ(ParseJwks("[]").error().ToString(), "INVALID_ARGUMENT: the JWKS is not a JSON object with a \"keys\" list");
  Json short_key = rsa.Jwk();
  short_key["n"] = Base64UrlEncode(std::string(128, '\x7f'));
  EXPECT_EQ(ParseJwks(Json{{"keys", {short_key}}}.dump()).error().ToString(),
            "INVALID_ARGUMENT: key 'r' of the JWKS: JWK RSA modulus of 1024 bits (2048 to 8192 accepted)");
}

// An issuer served from memory: discovery and a JWKS that the test can
// change, counting fetches.
struct FakeIssuer {
  Json jwks = {{"keys", Json::array()}};
  std::map<std::string, int> fetches;

  OidcFetch Fetch() {
    return [this](const std::string& url, const std::string&, size_t) -> Result<std::string> {
      ++fetches[url];
      if (url == std::string(kIssuer) + "/.well-known/openid-configuration")
        return Json{{"issuer", kIssuer}, {"jwks_uri", std::string(kIssuer) + "/keys"},
                    {"authorization_endpoint", std::string(kIssuer) + "/auth"},
                    {"token_endpoint", std::string(kIssuer) + "/token"}}.dump();
      if (url == std::string(kIssuer) + "/keys") return jwks.dump();
      return Error(Status::Unavailable(url + " answered HTTP 404"));
    };
  }
};

OidcConfig Config() {
  OidcConfig c;
  c.issuer = kIssuer;
  c.client_id = kClient;
  c.roles = {{"ml", Role::kRunner, {}}, {"ml-admins", Role::kAdmin, {}}, {"viewers", Role::kViewer, {}}};
  return c;
}

TEST(OidcVerifierTest, RefetchesTheKeysForAnUnknownKidAtMostOncePerInterval) {
  FakeIssuer issuer;
  TestKey k1 = TestKey::Make("k1", "RS256"), k2 = TestKey::Make("k2", "ES256");
  issuer.jwks["keys"].push_back(k1.Jwk());
  OidcVerifier::Options options;
  options.min_refetch_interval = std::chrono::hours(1);
  options.now = [] { return kNow; };
  OidcVerifier verifier(Config(), options, issuer.Fetch());
  auto id = verifier.Authenticate(k1.Sign(Claims()));
  ASSERT_TRUE(id) << id.error().ToString();
  EXPECT_EQ(id->name, "ada@example.com");
  EXPECT_EQ(id->role, Role::kRunner);
  EXPECT_EQ(issuer.fetches[std::string(kIssuer) + "/keys"], 1);
  // The issuer rotates to k2 within the interval: the first fetch was the
  // only one allowed, so k2 is unknown until the interval has passed.
  issuer.jwks["keys"].push_back(k2.Jwk());
  EXPECT_EQ(verifier.Authenticate(k2.Sign(Claims())).error().ToString(),
            "UNAUTHENTICATED: the ID token names the key 'k2', which the issuer's JWKS does not have");
  EXPECT_EQ(issuer.fetches[std::string(kIssuer) + "/keys"], 1);
  EXPECT_EQ(issuer.fetches[std::string(kIssuer) + "/.well-known/openid-configuration"], 1);

  options.min_refetch_interval = std::chrono::milliseconds(0);
  OidcVerifier fresh(Config(), options, issuer.Fetch());
  issuer.jwks["keys"] = {k1.Jwk()};
  ASSERT_TRUE(fresh.Authenticate(k1.Sign(Claims())));
  issuer.jwks["keys"].push_back(k2.Jwk());
  auto rotated = fresh.Authenticate(k2.Sign(Claims()));
  ASSERT_TRUE(rotated) << rotated.error().ToString();
  EXPECT_EQ(issuer.fetches[std::string(kIssuer) + "/keys"], 3);
  // A known kid makes no fetch.
  ASSERT_TRUE(fresh.Authenticate(k1.Sign(Claims())));
  EXPECT_EQ(issuer.fetches[std::string(kIssuer) + "/keys"], 3);
}

TEST(OidcVerifierTest, MapsGroupsToTheHighestRole) {
  OidcConfig c = Config();
  c.roles.push_back({"etl", Role::kRunner, {"etl-*"}});
  auto role = [&](std::vector<std::string> groups) {
    auto id = MapGroups(c, "ada", groups);
    return id ? std::string(RoleName(id->role)) + (id->scoped() ? " " + id->pipelines[0] : "")
              : id.error().ToString();
  };
  EXPECT_EQ(role({"viewers", "ml"}), "runner");
  EXPECT_EQ(role({"ml", "ml-admins"}), "admin");
  EXPECT_EQ(role({"etl", "viewers"}), "runner etl-*");
  EXPECT_EQ(role({"etl", "ml"}), "runner");  // one unscoped mapping of the role: every pipeline
  EXPECT_EQ(role({"sales"}),
            "PERMISSION_DENIED: 'ada' is in no group that oidc.roles maps to a role (its 'groups' claim: sales), "
            "and oidc has no defaultRole");
  c.default_role = Role::kViewer;
  EXPECT_EQ(role({}), "viewer");
}

TEST(OidcVerifierTest, NeedsTheUsernameClaimAndReportsAnUnreachableIssuer) {
  FakeIssuer issuer;
  TestKey k = TestKey::Make("k1", "RS256");
  issuer.jwks["keys"].push_back(k.Jwk());
  OidcVerifier::Options options;
  options.now = [] { return kNow; };
  OidcVerifier verifier(Config(), options, issuer.Fetch());
  Json c = Claims();
  c.erase("email");
  EXPECT_EQ(verifier.Authenticate(k.Sign(c)).error().ToString(),
            "UNAUTHENTICATED: the ID token has no string claim 'email' (oidc.usernameClaim)");
  OidcConfig wrong = Config();
  wrong.issuer = "https://elsewhere.test";
  OidcVerifier lost(wrong, options, issuer.Fetch());
  EXPECT_EQ(lost.Authenticate(k.Sign(Claims())).error().ToString(),
            "UNAVAILABLE: OIDC discovery: https://elsewhere.test/.well-known/openid-configuration answered HTTP 404");
  // Within the interval the failure is answered again without a fetch.
  EXPECT_EQ(lost.Endpoints().error().ToString(),
            "UNAVAILABLE: OIDC discovery: https://elsewhere.test/.well-known/openid-configuration answered HTTP 404");
  EXPECT_EQ(issuer.fetches["https://elsewhere.test/.well-known/openid-configuration"], 1);
}

TEST(OidcVerifierTest, PkceChallengeIsRfc7636s) {
  // RFC 7636, appendix B.
  EXPECT_EQ(PkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  EXPECT_EQ(RandomUrlToken().size(), 43u);
  EXPECT_NE(RandomUrlToken(), RandomUrlToken());
  EXPECT_EQ(CookieValue("a=1; sluice_session=xyz; b=2", "sluice_session"), "xyz");
  EXPECT_EQ(CookieValue("xsluice_session=1", "sluice_session"), "");
}

TEST(OidcConfigTest, ParsesTheSectionAndNamesEachMistake) {
  setenv("SLUICE_TEST_OIDC_SECRET", "s3cr3t", 1);
  auto config = ParseServerConfig(R"(oidc:
  issuer: https://dex.example.com/
  clientID: sluice
  clientSecretEnv: SLUICE_TEST_OIDC_SECRET
  redirectURL: https://sluice.example.com/auth/callback
  roles:
    - {group: ml-admins, role: admin}
    - {group: ml, role: runner, pipelines: ["retrain-*"]}
  defaultRole: viewer
)", "server.yaml");
  ASSERT_TRUE(config) << config.error().ToString();
  ASSERT_TRUE(config->oidc);
  EXPECT_EQ(config->oidc->issuer, "https://dex.example.com/");
  EXPECT_EQ(config->oidc->client_secret, "s3cr3t");
  EXPECT_EQ(config->oidc->groups_claim, "groups");
  EXPECT_EQ(config->oidc->username_claim, "email");
  ASSERT_EQ(config->oidc->roles.size(), 2u);
  EXPECT_EQ(config->oidc->roles[1].pipelines, std::vector<std::string>{"retrain-*"});
  EXPECT_EQ(config->oidc->default_role, Role::kViewer);
  auto error = [](const std::string& text) {
    auto c = ParseServerConfig(text, "server.yaml");
    return c ? "ok" : c.error().message();
  };
  EXPECT_EQ(error("oidc:\n  issuer: http://dex.example.com\n  clientID: s\n"),
            "server.yaml:2:11: oidc.issuer must be an https:// URL");
  EXPECT_EQ(error("oidc:\n  issuer: http://127.0.0.1:5556\n  clientID: s\n"), "ok");
  EXPECT_EQ(error("oidc:\n  issuer: https://d\n"), "server.yaml:2:3: oidc needs issuer and clientID");
  EXPECT_EQ(error("oidc:\n  issuer: https://d\n  clientID: s\n  roles: [{group: g, role: root}]\n"),
            "server.yaml:4:28: unknown role 'root' (expected one of: viewer, runner, admin)");
  EXPECT_EQ(error("oidc:\n  issuer: https://d\n  clientID: s\n  clientSecretEnv: SLUICE_TEST_UNSET_VAR\n"),
            "server.yaml:4:20: environment variable SLUICE_TEST_UNSET_VAR (oidc.clientSecretEnv) is not set");
  EXPECT_EQ(error("oidc:\n  issuer: https://d\n  clientID: s\n  secret: x\n"),
            "server.yaml:4:3: unknown key 'secret' in oidc (expected one of: issuer, clientID, clientSecretFile, "
            "clientSecretEnv, caFile, redirectURL, scopes, groupsClaim, usernameClaim, roles, defaultRole)");
}

}  // namespace
}  // namespace sluice::server
