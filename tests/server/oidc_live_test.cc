// OIDC identities of `sluice serve` against a real OpenID Connect provider:
// Ory Hydra with its login app (tests/server/oidc/hydra, started by the
// CTest fixture "oidc"). A `sluice serve` (the in-process Server, as
// api_test.cc) trusts it; the test logs users in the way a browser does:
// GET /auth/login, follow the redirects to the provider's login form, POST
// the form, follow the redirects back through /auth/callback, which sets the
// session cookie. That cookie's value is the ID token, which the test also
// sends as a bearer token.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "engine/server/oidc.h"
#include "engine/text.h"
#include "engine/server/server.h"
#include "server_test_util.h"
#include "tests/support/free_port.h"
#include "tests/support/subprocess.h"

namespace sluice::server {
namespace {

using namespace testing;  // NOLINT: the server test helpers

const char kHello[] = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: hello
steps:
  - name: a
    command: [echo, a]
)";

// KEY=VALUE lines of the fixture's env file.
std::map<std::string, std::string> ReadEnv(const std::string& path) {
  std::map<std::string, std::string> env;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (size_t eq = line.find('='); eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  return env;
}

// Just enough of a browser: a cookie jar per origin, redirects followed by
// hand (across http and https origins), TLS verified against the test CA.
class Browser {
 public:
  explicit Browser(std::string ca) : ca_(std::move(ca)) {}

  struct Page {
    int status = 0;
    std::string url;  // the last URL requested
    std::string body;
    httplib::Headers headers;
  };

  // Requests `url` (GET, or a form POST when `form` is set) and follows
  // redirects until an answer that is not one, or until `stop_at` prefixes
  // the next URL (then that redirect is the answer).
  Page Go(std::string url, std::optional<std::string> form = std::nullopt, const std::string& stop_at = "") {
    Page page;
    for (int hop = 0; hop < 20; ++hop) {
      auto [origin, path] = Split(url);
      httplib::Client client(origin);
      client.set_ca_cert_path(ca_.c_str());
      client.enable_server_certificate_verification(true);
      client.set_read_timeout(30);
      // cpp-httplib hands the Location header over percent-decoded, but
      // leaves '+' (a space in a query) as it is; its own re-encoding would
      // turn that '+' into %2B. Spaces are re-encoded here instead.
      client.set_url_encode(false);
      httplib::Headers headers;
      std::string cookies;
      for (const auto& [name, value] : jar_[origin]) cookies += (cookies.empty() ? "" : "; ") + name + "=" + value;
      if (!cookies.empty()) headers.emplace("Cookie", cookies);
      for (size_t sp; (sp = path.find(' ')) != std::string::npos;) path.replace(sp, 1, "%20");
      auto res = form ? client.Post(path.c_str(), headers, *form, "application/x-www-form-urlencoded")
                      : client.Get(path.c_str(), headers);
      form.reset();
      if (!res) {
        ADD_FAILURE() << url << ": " << httplib::to_string(res.error());
        return page;
      }
      auto range = res->headers.equal_range("Set-Cookie");
      for (auto it = range.first; it != range.second; ++it) {
        std::string c = it->second.substr(0, it->second.find(';'));
        size_t eq = c.find('=');
        if (eq == std::string::npos) continue;
        set_cookies_.push_back(it->second);
        if (c.size() == eq + 1 || it->second.find("Max-Age=0") != std::string::npos)
          jar_[origin].erase(c.substr(0, eq));
        else
          jar_[origin][c.substr(0, eq)] = c.substr(eq + 1);
      }
      page = {res->status, url, res->body, res->headers};
      if (res->status < 300 || res->status >= 400 || !res->has_header("Location")) return page;
      std::string next = res->get_header_value("Location");
      if (next.rfind("/", 0) == 0) next = origin + next;
      if (!stop_at.empty() && next.rfind(stop_at, 0) == 0) return page;
      url = next;
    }
    ADD_FAILURE() << "more than 20 redirects from " << url;
    return page;
  }

  std::string Cookie(const std::string& origin, const std::string& name) {
    auto it = jar_[origin].find(name);
    return it == jar_[origin].end() ? "" : it->second;
  }
  // Every Set-Cookie header value seen, in order.
  const std::vector<std::string>& set_cookies() const { return set_cookies_; }

 private:
  static std::pair<std::string, std::string> Split(const std::string& url) {
    size_t slash = url.find('/', url.find("://") + 3);
    if (slash == std::string::npos) return {url, "/"};
    return {url.substr(0, slash), url.substr(slash)};
  }

  std::string ca_;
  std::map<std::string, std::map<std::string, std::string>> jar_;
  std::vector<std::string> set_cookies_;
};

class OidcLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = ReadEnv(std::string(SLUICE_TEST_OIDC_STATE) + "/env");
    if (env_.count("SLUICE_TEST_OIDC_ISSUER") == 0)
      GTEST_SKIP() << "no OIDC provider: the fixture (tests/server/oidc/ctest-fixture.sh up) did not start "
                      "one; it needs a Go toolchain to build Ory Hydra, or SLUICE_SKIP_OIDC=1 was set";
    root_ = MakeTempDir("oidc-live");
    WriteFile(root_ + "/repo/hello.yaml", kHello);
  }
  void TearDown() override {
    control_.Release();
    servers_.clear();
    if (!root_.empty()) std::filesystem::remove_all(root_);
  }

  // Registers a client for a server on a free port and starts that server
  // trusting the provider. Returns the server's URL; `client_id` gets the id.
  std::string StartServer(std::string* client_id = nullptr) {
    // The redirect URL registered with the provider names the port before
    // the server starts.
    int port = testutil::FreePort();
    std::string url = "http://127.0.0.1:" + std::to_string(port);
    auto out = testutil::RunProcess({SLUICE_OIDC_SCRIPT, "client", SLUICE_TEST_OIDC_STATE, url + "/auth/callback"},
                                    root_);
    EXPECT_EQ(out.exit_code, 0) << out.err;
    std::map<std::string, std::string> client;
    std::istringstream lines(out.out);
    for (std::string line; std::getline(lines, line);)
      if (size_t eq = line.find('='); eq != std::string::npos) client[line.substr(0, eq)] = line.substr(eq + 1);
    if (client_id) *client_id = client["CLIENT_ID"];
    std::string dir = root_ + "/server-" + std::to_string(servers_.size());
    WriteFile(dir + "/client-secret", client["CLIENT_SECRET"] + "\n");
    WriteFile(dir + "/server.yaml", "oidc:\n  issuer: " + env_["SLUICE_TEST_OIDC_ISSUER"] +
                                        "\n  clientID: " + client["CLIENT_ID"] +
                                        "\n  clientSecretFile: " + dir + "/client-secret" +
                                        "\n  caFile: " + env_["SLUICE_TEST_OIDC_CA"] +
                                        "\n  redirectURL: " + url + "/auth/callback" +
                                        "\n  roles:\n    - {group: ml-admins, role: admin}"
                                        "\n    - {group: ml, role: runner}"
                                        "\n    - {group: ml-viewers, role: viewer}\n");
    StartWithConfig(dir + "/server.yaml", dir + "/state", port);
    return url;
  }

  // Starts a server on `port` (0: any) with the config at `config`; returns its URL.
  std::string StartWithConfig(const std::string& config, const std::string& state, int port) {
    ServerOptions o;
    o.pipelines_dir = root_ + "/repo";
    o.state_dir = state;
    o.listen = "127.0.0.1:" + std::to_string(port);
    o.config_path = config;
    o.run_scheduler = false;
    o.watch = false;
    o.resume_interrupted = false;
    auto self = std::make_shared<Server*>(nullptr);
    auto server = std::make_unique<Server>(o, nullptr, nullptr, FakeFactory([self] { return (*self)->store(); }, &control_));
    *self = server.get();
    Status s = server->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    servers_.push_back(std::move(server));
    return servers_.back()->url();
  }

  // Logs `email` in at the server `url` through the provider's form; the
  // browser ends on the UI (or on the callback's refusal).
  Browser::Page LogIn(Browser& browser, const std::string& url, const std::string& email) {
    Browser::Page form = browser.Go(url + "/auth/login");
    EXPECT_EQ(form.status, 200) << form.url << ": " << form.body;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(form.body, m, std::regex(R"(name="login_challenge" value="([^"]*)\")")))
        << form.body;
    std::string challenge = m.size() > 1 ? m[1].str() : "";
    std::string action = form.url.substr(0, form.url.find('/', form.url.find("://") + 3)) + "/login";
    return browser.Go(action, "login_challenge=" + UrlEncode(challenge) + "&email=" + UrlEncode(email) +
                                  "&password=" + UrlEncode(env_["SLUICE_TEST_OIDC_PASSWORD"]));
  }

  // An ID token of `email` for the server at `url` (its session cookie).
  std::string IdToken(const std::string& url, const std::string& email) {
    Browser browser(env_["SLUICE_TEST_OIDC_CA"]);
    Browser::Page ui = LogIn(browser, url, email);
    EXPECT_EQ(ui.status, 200) << ui.url << ": " << ui.body;
    return browser.Cookie(url, kSessionCookie);
  }

  static httplib::Result Call(const std::string& url, const std::string& method, const std::string& path,
                              httplib::Headers headers) {
    httplib::Client client(url);
    if (method == "GET") return client.Get(path.c_str(), headers);
    return client.Post(path.c_str(), headers, "{}", "application/json");
  }
  static httplib::Headers Bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }
  static std::string Message(const httplib::Result& res) {
    return res ? Json::parse(res->body, nullptr, false)["error"].value("message", "") : "no answer";
  }

  std::map<std::string, std::string> env_;
  std::string root_;
  FakeRunControl control_;
  std::vector<std::unique_ptr<Server>> servers_;
};

TEST_F(OidcLiveTest, CodeFlowWithPkceSignsTheWebUiIn) {
  std::string url = StartServer();
  Browser browser(env_["SLUICE_TEST_OIDC_CA"]);
  Browser::Page ui = LogIn(browser, url, "admin@example.com");
  ASSERT_EQ(ui.status, 200) << ui.url << ": " << ui.body;
  EXPECT_EQ(ui.url, url + "/");
  EXPECT_NE(ui.body.find("<title>sluice</title>"), std::string::npos);
  std::string session = browser.Cookie(url, kSessionCookie);
  ASSERT_FALSE(session.empty());
  EXPECT_EQ(browser.Cookie(url, kLoginCookie), "");  // the login's state is cleared
  bool http_only = false;
  for (const std::string& c : browser.set_cookies())
    if (c.rfind(std::string(kSessionCookie) + "=" + session, 0) == 0)
      http_only = c.find("; HttpOnly; SameSite=Lax") != std::string::npos;
  EXPECT_TRUE(http_only);

  httplib::Headers cookie = {{"Cookie", std::string(kSessionCookie) + "=" + session}};
  auto who = Call(url, "GET", "/api/v1/whoami", cookie);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->status, 200);
  EXPECT_EQ(Json::parse(who->body), (Json{{"name", "admin@example.com"}, {"role", "admin"}, {"pipelines", Json::array()}}));
  // A write with the cookie alone is refused; with the UI's header it is done.
  auto refused = Call(url, "POST", "/api/v1/reload", cookie);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(Message(refused), "a write signed in by the session cookie needs the X-Sluice-CSRF header (the web UI sends it)");
  cookie.emplace(kCsrfHeader, "1");
  auto reload = Call(url, "POST", "/api/v1/reload", cookie);
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  // The audit log names the user; no answer carries the token.
  auto audit = Call(url, "GET", "/api/v1/audit", cookie);
  ASSERT_TRUE(audit);
  EXPECT_EQ(Json::parse(audit->body)["entries"][0]["who"], "admin@example.com");
  EXPECT_EQ(audit->body.find(session), std::string::npos);
  EXPECT_EQ(who->body.find(session), std::string::npos);

  // Another replica with the same config accepts the session: the cookie is
  // the ID token, not a key into one server's memory.
  std::string replica = StartWithConfig(root_ + "/server-0/server.yaml", root_ + "/replica-state", 0);
  auto elsewhere = Call(replica, "GET", "/api/v1/whoami", cookie);
  ASSERT_TRUE(elsewhere);
  EXPECT_EQ(elsewhere->status, 200) << elsewhere->body;
  EXPECT_EQ(Json::parse(elsewhere->body)["name"], "admin@example.com");

  // A callback whose state is not the login's is refused.
  Browser other(env_["SLUICE_TEST_OIDC_CA"]);
  Browser::Page redirect = other.Go(url + "/auth/login", std::nullopt, env_["SLUICE_TEST_OIDC_ISSUER"]);
  EXPECT_EQ(redirect.status, 302);
  Browser::Page forged = other.Go(url + "/auth/callback?code=x&state=not-the-state");
  EXPECT_EQ(forged.status, 400);
  EXPECT_EQ(Json::parse(forged.body)["error"]["message"], "the login's state does not match; start again at /auth/login");
  // Without the login cookie at all.
  auto cold = Call(url, "GET", "/auth/callback?code=x&state=y", {});
  ASSERT_TRUE(cold);
  EXPECT_EQ(cold->status, 400);
  EXPECT_EQ(Message(cold), "no login in progress (its cookie is missing or expired); start again at /auth/login");
}

TEST_F(OidcLiveTest, BearerIdTokensGetTheRoleOfTheirGroups) {
  std::string url = StartServer();
  std::string viewer = IdToken(url, "viewer@example.com"), runner = IdToken(url, "runner@example.com");
  ASSERT_FALSE(viewer.empty());
  ASSERT_FALSE(runner.empty());
  auto runs = Call(url, "GET", "/api/v1/runs", Bearer(viewer));
  ASSERT_TRUE(runs);
  EXPECT_EQ(runs->status, 200) << runs->body;
  auto write = Call(url, "POST", "/api/v1/pipelines/hello/runs", Bearer(viewer));
  ASSERT_TRUE(write);
  EXPECT_EQ(write->status, 403);
  EXPECT_EQ(Message(write),
            "'viewer@example.com' has the role viewer; POST /api/v1/pipelines/{pipeline}/runs needs runner or above");
  auto submitted = Call(url, "POST", "/api/v1/pipelines/hello/runs", Bearer(runner));
  ASSERT_TRUE(submitted);
  EXPECT_EQ(submitted->status, 201) << submitted->body;
  EXPECT_TRUE(servers_[0]->runs()->WaitIdle(std::chrono::seconds(30)));
  auto who = Call(url, "GET", "/api/v1/whoami", Bearer(runner));
  ASSERT_TRUE(who);
  EXPECT_EQ(Json::parse(who->body)["role"], "runner");

  // One flipped byte of the signature.
  std::string tampered = viewer;
  char& c = tampered[tampered.size() - 10];
  c = c == 'A' ? 'B' : 'A';
  auto bad = Call(url, "GET", "/api/v1/runs", Bearer(tampered));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  EXPECT_EQ(Message(bad), "the ID token's signature does not verify");
}

TEST_F(OidcLiveTest, TokensOfAnotherClientAndUsersOfNoMappedGroupAreRefused) {
  std::string client_a, client_b;
  std::string a = StartServer(&client_a), b = StartServer(&client_b);
  std::string for_b = IdToken(b, "admin@example.com");
  ASSERT_FALSE(for_b.empty());
  auto wrong_audience = Call(a, "GET", "/api/v1/runs", Bearer(for_b));
  ASSERT_TRUE(wrong_audience);
  EXPECT_EQ(wrong_audience->status, 401);
  EXPECT_EQ(Message(wrong_audience), "the ID token's audience does not contain the client id '" + client_a + "'");
  // A user whose only group maps to no role gets no session.
  Browser browser(env_["SLUICE_TEST_OIDC_CA"]);
  Browser::Page refused = LogIn(browser, a, "nobody@example.com");
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(Json::parse(refused.body)["error"]["message"],
            "'nobody@example.com' is in no group that oidc.roles maps to a role (its 'groups' claim: sales), and "
            "oidc has no defaultRole");
  EXPECT_EQ(browser.Cookie(a, kSessionCookie), "");
}

}  // namespace
}  // namespace sluice::server
