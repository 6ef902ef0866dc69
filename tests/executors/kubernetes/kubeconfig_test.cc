// kubeconfig loading: files, merging, contexts, every kind of credential
// (including an exec plugin that is a real Python script), in-cluster config.

#include "executors/kubernetes/api/kubeconfig.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

namespace sluice::k8s {
namespace {

namespace fs = std::filesystem;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sluice-kubeconfig-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text, bool exec = false) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    if (exec) ::chmod(p.c_str(), 0755);
    return p.string();
  }

  // Options that never look at the real environment.
  KubeconfigOptions Opts(const std::string& path = "") {
    KubeconfigOptions o;
    o.kubeconfig = path;
    o.kubeconfig_env = "";
    o.home = (dir_ / "home").string();
    o.service_host = "";
    o.service_port = "";
    o.service_account_dir = (dir_ / "sa").string();
    return o;
  }

  fs::path dir_;
};

constexpr char kBasic[] = R"(apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:26402
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
- name: other
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: certs/ca.crt
users:
- name: admin
  user:
    token: abc123
- name: filer
  user:
    tokenFile: token.txt
    client-certificate: certs/client.crt
    client-key: certs/client.key
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: ml}
- name: other
  context: {cluster: other, user: filer}
current-context: test
)";

TEST_F(KubeconfigTest, TokenUserAndContextNamespace) {
  auto c = LoadRestConfig(Opts(Write("config", kBasic)));
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->context, "test");
  EXPECT_EQ(c->namespace_, "ml");
  EXPECT_EQ(c->cluster.server, "https://127.0.0.1:26402");
  EXPECT_EQ(c->cluster.ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(c->user.token, "abc123");
  CredentialSource creds(c->user, c->cluster);
  EXPECT_EQ(creds.Get()->token, "abc123");
}

TEST_F(KubeconfigTest, RelativeFilesAndTokenFile) {
  Write("certs/ca.crt", "CA PEM");
  Write("certs/client.crt", "CERT PEM");
  Write("certs/client.key", "KEY PEM");
  Write("token.txt", "from-file\n");
  KubeconfigOptions o = Opts(Write("config", kBasic));
  o.context = "other";
  auto c = LoadRestConfig(o);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->namespace_, "default");
  EXPECT_EQ(c->cluster.ca_pem, "CA PEM");
  EXPECT_EQ(c->cluster.ca_source, (dir_ / "certs/ca.crt").string());
  EXPECT_EQ(c->user.client_cert_pem, "CERT PEM");
  EXPECT_EQ(c->user.client_key_pem, "KEY PEM");
  CredentialSource creds(c->user, c->cluster);
  auto got = creds.Get();
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->token, "from-file");
  EXPECT_EQ(got->client_cert_pem, "CERT PEM");
}

TEST_F(KubeconfigTest, ClientCertificateData) {
  std::string text = R"(clusters:
- name: c
  cluster: {server: "https://k:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
)";
  auto c = LoadRestConfig(Opts(Write("config", text)));
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_TRUE(c->cluster.insecure_skip_tls_verify);
  EXPECT_EQ(c->user.client_cert_pem, "CERT");
  EXPECT_EQ(c->user.client_key_pem, "KEY");
}

TEST_F(KubeconfigTest, KubeconfigListMergesFirstWins) {
  std::string a = Write("a.yaml", R"(clusters:
- name: test
  cluster: {server: "https://first:1"}
contexts:
- name: test
  context: {cluster: test}
current-context: test
)");
  std::string b = Write("b.yaml", R"(clusters:
- name: test
  cluster: {server: "https://second:2"}
- name: only-b
  cluster: {server: "https://b:3"}
users:
- name: u
  user: {token: t}
contexts:
- name: b
  context: {cluster: only-b, user: u, namespace: nb}
current-context: b
)");
  KubeconfigOptions o = Opts();
  o.kubeconfig_env = a + ":" + (dir_ / "missing.yaml").string() + ":" + b;
  auto c = LoadRestConfig(o);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->context, "test");  // a's current-context wins
  EXPECT_EQ(c->cluster.server, "https://first:1");
  o.context = "b";
  c = LoadRestConfig(o);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->cluster.server, "https://b:3");
  EXPECT_EQ(c->namespace_, "nb");
  EXPECT_EQ(c->source, "kubeconfig " + a + ":" + b + " ($KUBECONFIG)");
}

TEST_F(KubeconfigTest, HomeConfigAndNamespaceOverride) {
  Write("home/.kube/config", kBasic);
  KubeconfigOptions o = Opts();
  o.namespace_ = "override";
  auto c = LoadRestConfig(o);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->namespace_, "override");
  EXPECT_EQ(c->source, "kubeconfig " + (dir_ / "home/.kube/config").string() + " (~/.kube/config)");
}

TEST_F(KubeconfigTest, ClearErrors) {
  std::string path = Write("config", kBasic);
  KubeconfigOptions o = Opts(path);
  o.context = "tset";
  EXPECT_EQ(LoadRestConfig(o).error().ToString(),
            "NOT_FOUND: context (--context) \"tset\" is not defined in " + path +
                "; did you mean \"test\"?");

  o.context = "";
  EXPECT_EQ(LoadRestConfig(Opts((dir_ / "nope").string())).error().ToString(),
            "NOT_FOUND: kubeconfig " + (dir_ / "nope").string() +
                " (from --kubeconfig) does not exist");

  std::string bad = Write("bad.yaml", "clusters:\n- name: a\n  cluster: {server: [\n");
  auto err = LoadRestConfig(Opts(bad)).error();
  EXPECT_EQ(err.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(err.message().rfind(bad + ":4:1: invalid kubeconfig YAML: ", 0), 0u) << err.message();

  std::string missing_user = Write("mu.yaml", R"(clusters:
- name: c
  cluster: {server: "https://k:1"}
users:
- name: admin
  user: {token: x}
contexts:
- name: x
  context: {cluster: c, user: admn}
current-context: x
)");
  EXPECT_EQ(LoadRestConfig(Opts(missing_user)).error().ToString(),
            "NOT_FOUND: context \"x\": user \"admn\" is not defined in " + missing_user +
                "; did you mean \"admin\"?");

  EXPECT_EQ(LoadRestConfig(Opts()).error().ToString(),
            "NOT_FOUND: no kubeconfig found: pass --kubeconfig, set $KUBECONFIG, or create "
            "~/.kube/config (and not running in a pod: not running in a Kubernetes pod "
            "(KUBERNETES_SERVICE_HOST/PORT unset))");
}

TEST_F(KubeconfigTest, MalformedBase64DataIsRefused) {
  const std::string good = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
  auto load = [&](const std::string& data) {
    std::string text = kBasic;
    text.replace(text.find(good), good.size(), data);
    std::string path = Write("config", text);
    return std::make_pair(path, LoadRestConfig(Opts(path)));
  };
  auto [path, padded] = load("LS0tLS1CRUdJTiBDRVJU\n      SUZJQ0FURS0tLS0tCg==");
  ASSERT_TRUE(padded) << padded.error().ToString();
  EXPECT_EQ(padded->cluster.ca_pem, "-----BEGIN CERTIFICATE-----\n");

  const std::string what = ": certificate-authority-data of cluster \"test\" is not valid base64 ";
  auto [p1, glued] = load("Zg==Zm8=");
  EXPECT_EQ(glued.error().ToString(), "INVALID_ARGUMENT: " + p1 + what + "('=' padding before the end)");
  auto [p2, cut] = load("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg");
  EXPECT_EQ(cut.error().ToString(), "INVALID_ARGUMENT: " + p2 + what +
                                        "(38 characters, not a multiple of 4: the text is cut short or its '=' "
                                        "padding is missing)");
  auto [p3, url_safe] = load("AP_-");
  EXPECT_EQ(url_safe.error().ToString(), "INVALID_ARGUMENT: " + p3 + what + "(unexpected character '_')");
}

TEST_F(KubeconfigTest, InCluster) {
  Write("sa/token", "sa-token\n");
  Write("sa/ca.crt", "SA CA");
  Write("sa/namespace", "team-a");
  KubeconfigOptions o = Opts();
  o.service_host = "10.96.0.1";
  o.service_port = "443";
  auto c = LoadRestConfig(o);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_TRUE(c->in_cluster);
  EXPECT_EQ(c->cluster.server, "https://10.96.0.1:443");
  EXPECT_EQ(c->cluster.ca_pem, "SA CA");
  EXPECT_EQ(c->namespace_, "team-a");
  CredentialSource creds(c->user, c->cluster);
  EXPECT_EQ(creds.Get()->token, "sa-token");
}

// A credential plugin written in Python: prints an ExecCredential, checks
// KUBERNETES_EXEC_INFO and its env, and counts its runs in a file.
constexpr char kPlugin[] = R"(#!/usr/bin/env python3
import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["kind"] == "ExecCredential", info
assert info["spec"]["interactive"] is False, info
assert os.environ["PLUGIN_MODE"] in ("fresh", "expired"), os.environ.get("PLUGIN_MODE")
count_file = sys.argv[1]
n = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(n))
expiry = "2999-01-01T00:00:00Z" if os.environ["PLUGIN_MODE"] == "fresh" else "2000-01-01T00:00:00Z"
print(json.dumps({
    "apiVersion": info["apiVersion"], "kind": "ExecCredential",
    "status": {"token": "exec-token-%d" % n, "expirationTimestamp": expiry,
               "server": info["spec"].get("cluster", {}).get("server", "")}}))
)";

std::string ExecConfigYaml(const std::string& plugin, const std::string& counter,
                           const std::string& mode, const std::string& api) {
  return R"(clusters:
- name: c
  cluster: {server: "https://k:1"}
users:
- name: cloud
  user:
    exec:
      apiVersion: )" + api + R"(
      command: )" + plugin + R"(
      args: [")" + counter + R"("]
      env:
      - {name: PLUGIN_MODE, value: )" + mode + R"(}
      provideClusterInfo: true
      interactiveMode: Never
contexts:
- name: x
  context: {cluster: c, user: cloud}
current-context: x
)";
}

TEST_F(KubeconfigTest, ExecPluginIsCachedUntilExpiry) {
  std::string plugin = Write("bin/plugin.py", kPlugin, /*exec=*/true);
  std::string counter = (dir_ / "count").string();
  for (const char* api : {"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"}) {
    fs::remove(counter);
    auto c = LoadRestConfig(Opts(Write("config", ExecConfigYaml(plugin, counter, "fresh", api))));
    ASSERT_TRUE(c) << c.error().ToString();
    CredentialSource creds(c->user, c->cluster);
    auto first = creds.Get();
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_EQ(first->token, "exec-token-1");
    EXPECT_EQ(creds.Get()->token, "exec-token-1");  // cached
    EXPECT_EQ(creds.exec_runs(), 1);
    EXPECT_EQ(creds.Get(/*refresh=*/true)->token, "exec-token-2");  // after a 401
  }
}

TEST_F(KubeconfigTest, ExpiredExecCredentialRunsAgain) {
  std::string plugin = Write("bin/plugin.py", kPlugin, /*exec=*/true);
  std::string counter = (dir_ / "count").string();
  auto c = LoadRestConfig(Opts(Write(
      "config", ExecConfigYaml(plugin, counter, "expired", "client.authentication.k8s.io/v1"))));
  ASSERT_TRUE(c) << c.error().ToString();
  CredentialSource creds(c->user, c->cluster);
  EXPECT_EQ(creds.Get()->token, "exec-token-1");
  EXPECT_EQ(creds.Get()->token, "exec-token-2");
  EXPECT_EQ(creds.exec_runs(), 2);
}

TEST_F(KubeconfigTest, ExecPluginFailures) {
  std::string text = R"(clusters:
- name: c
  cluster: {server: "https://k:1"}
users:
- name: cloud
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: sluice-no-such-plugin
      installHint: "install it with: pip install sluice-auth"
contexts:
- name: x
  context: {cluster: c, user: cloud}
current-context: x
)";
  auto c = LoadRestConfig(Opts(Write("config", text)));
  ASSERT_TRUE(c) << c.error().ToString();
  CredentialSource missing(c->user, c->cluster);
  EXPECT_EQ(missing.Get().error().ToString(),
            "NOT_FOUND: exec credential plugin \"sluice-no-such-plugin\" of user \"cloud\" could "
            "not be started: No such file or directory\ninstall it with: pip install sluice-auth");

  std::string failing = Write("bin/fail.sh", "#!/bin/sh\necho denied >&2\nexit 3\n", true);
  UserConfig u = c->user;
  u.exec->command = failing;
  CredentialSource fails(u, c->cluster);
  EXPECT_EQ(fails.Get().error().ToString(),
            "UNAUTHENTICATED: exec credential plugin \"" + failing +
                "\" of user \"cloud\" exited with code 3 (its stderr is above)");

  EXPECT_EQ(ParseExecCredential(R"({"apiVersion": "client.authentication.k8s.io/v1beta1",
                                    "kind": "ExecCredential", "status": {"token": "t"}})",
                                "client.authentication.k8s.io/v1")
                .error()
                .message(),
            "the exec credential plugin printed apiVersion "
            "\"client.authentication.k8s.io/v1beta1\", but the kubeconfig asked for "
            "\"client.authentication.k8s.io/v1\"");
  auto cert = ParseExecCredential(R"({"apiVersion": "client.authentication.k8s.io/v1",
      "kind": "ExecCredential", "status": {"clientCertificateData": "C", "clientKeyData": "K",
      "expirationTimestamp": "2030-01-02T03:04:05+01:00"}})",
                                  "client.authentication.k8s.io/v1");
  ASSERT_TRUE(cert) << cert.error().ToString();
  EXPECT_EQ(cert->client_cert_pem, "C");
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*cert->expiry), 1893549845);
}

TEST(ExecCredentialTest, MalformedOutputIsAnErrorNotACrash) {
  const std::string v1 = "client.authentication.k8s.io/v1";
  // Fields of the wrong JSON type.
  EXPECT_EQ(ParseExecCredential(R"({"apiVersion": "client.authentication.k8s.io/v1",
                                    "kind": {"a": 1}})", v1)
                .error()
                .ToString(),
            "UNAUTHENTICATED: the exec credential plugin printed kind \"\", want ExecCredential");
  EXPECT_EQ(ParseExecCredential(R"({"apiVersion": 1, "kind": "ExecCredential"})", v1)
                .error()
                .message(),
            "the exec credential plugin printed apiVersion \"\", but the kubeconfig asked for "
            "\"client.authentication.k8s.io/v1\"");
  auto with_expiry = [&](const std::string& ts) {
    return ParseExecCredential(R"({"apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential", "status": {"token": "t", "expirationTimestamp": ")" + ts + "\"}}",
                               v1);
  };
  // An offset shorter than +hh:mm ends the text before the parser's fixed
  // six characters would.
  for (const std::string ts : {"2026-01-02T15:04:05+1:2", "2026-01-02T15:04:05+01:0",
                               "2026-01-02T15:04:05-", "2026-01-02T15:04:05+0100"}) {
    EXPECT_EQ(with_expiry(ts).error().message(),
              "the exec credential plugin printed an unparsable expirationTimestamp \"" + ts +
                  "\" (want RFC 3339, e.g. 2026-01-02T15:04:05Z)");
  }
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*with_expiry("2026-01-02T15:04:05-01:30")->expiry),
            1767371645);
  // Before 1678 a nanosecond system_clock overflows: such a date is long
  // expired, taken as 1970-01-01.
  EXPECT_EQ(std::chrono::system_clock::to_time_t(*with_expiry("1000-01-02T15:04:05Z")->expiry), 0);
}

// A user whose exec plugin is `plugin`.
UserConfig ExecUser(const std::string& plugin) {
  UserConfig u;
  u.name = "cloud";
  u.exec = ExecConfig{};
  u.exec->api_version = "client.authentication.k8s.io/v1";
  u.exec->command = plugin;
  return u;
}

// True when process `pid` ends (or has ended) within a generous bound: a
// pidfd becomes readable when it exits, whoever its parent is.
bool Ends(pid_t pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int n = poll(&p, 1, 60000);
  close(fd);
  return n == 1;
}

pid_t ReadPid(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

TEST_F(KubeconfigTest, ExecPluginThatHangsIsKilledWithItsGroupAtTheDeadline) {
  // The plugin and a child of it both hang; both must be gone afterwards.
  std::string child = (dir_ / "child.pid").string();
  std::string plugin =
      Write("bin/hang.sh", "#!/bin/sh\nsleep 1000 &\necho $! > " + child + "\nsleep 1000\n", /*exec=*/true);
  ExecPluginLimits limits;
  limits.timeout = std::chrono::milliseconds(300);
  CredentialSource creds(ExecUser(plugin), ClusterConfig{}, limits);
  EXPECT_EQ(creds.Get().error().ToString(),
            "DEADLINE_EXCEEDED: exec credential plugin \"" + plugin +
                "\" of user \"cloud\" did not finish within 300ms; it was stopped (its process group got SIGKILL)");
  pid_t pid = ReadPid(child);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(Ends(pid));
}

TEST_F(KubeconfigTest, ExecPluginWhoseChildHoldsStdoutIsNotWaitedFor) {
  // It prints its credential and exits; a background child keeps its stdout
  // open. The credential is used at once, long before the deadline.
  std::string child = (dir_ / "child.pid").string();
  std::string plugin = Write("bin/bg.sh",
                             "#!/bin/sh\n"
                             "echo '{\"apiVersion\": \"client.authentication.k8s.io/v1\", \"kind\": "
                             "\"ExecCredential\", \"status\": {\"token\": \"bg-token\"}}'\n"
                             "sleep 1000 &\necho $! > " + child + "\nexit 0\n",
                             /*exec=*/true);
  ExecPluginLimits limits;
  limits.timeout = std::chrono::seconds(60);
  CredentialSource creds(ExecUser(plugin), ClusterConfig{}, limits);
  auto got = creds.Get();
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->token, "bg-token");
  pid_t pid = ReadPid(child);
  ASSERT_GT(pid, 0);
  ::kill(pid, SIGKILL);
}

TEST_F(KubeconfigTest, ExecPluginThatFloodsStdoutIsStoppedAtTheCap) {
  std::string plugin = Write("bin/flood.sh", "#!/bin/sh\nexec yes 0123456789abcdef\n", /*exec=*/true);
  ExecPluginLimits limits;
  limits.max_output = 65536;
  CredentialSource creds(ExecUser(plugin), ClusterConfig{}, limits);
  EXPECT_EQ(creds.Get().error().ToString(),
            "UNAUTHENTICATED: exec credential plugin \"" + plugin +
                "\" of user \"cloud\" printed more than 65536 bytes; it was stopped (an ExecCredential is a "
                "small JSON document)");
}

TEST_F(KubeconfigTest, InterruptExecPluginsStopsAWaitingPluginAtOnce) {
  // The plugin opens a FIFO once it runs (the test's signal to interrupt),
  // then hangs; the deadline is far away.
  std::string fifo = (dir_ / "started").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string plugin = Write("bin/wait.sh", "#!/bin/sh\necho go > " + fifo + "\nexec sleep 1000\n", true);
  ExecPluginLimits limits;
  limits.timeout = std::chrono::seconds(600);
  CredentialSource creds(ExecUser(plugin), ClusterConfig{}, limits);
  std::thread interrupter([&] {
    int fd = ::open(fifo.c_str(), O_RDONLY);  // returns once the plugin opened it
    char buf[8];
    (void)!::read(fd, buf, sizeof buf);
    ::close(fd);
    InterruptExecPlugins();
  });
  auto got = creds.Get();
  interrupter.join();
  EXPECT_EQ(got.error().ToString(), "CANCELLED: exec credential plugin \"" + plugin +
                                        "\" of user \"cloud\" was stopped: sluice is shutting down");
  // Nor is a plugin started afterwards (the process is shutting down; this
  // test is the last in this file to run a plugin).
  EXPECT_EQ(creds.Get().error().ToString(), "CANCELLED: exec credential plugin \"" + plugin +
                                                "\" of user \"cloud\" was not started: sluice is shutting down");
}

TEST(ClosestNameTest, Suggests) {
  EXPECT_EQ(ClosestName("kind-sluce", {"kind-sluice", "prod"}), "kind-sluice");
  EXPECT_EQ(ClosestName("zzz", {"kind-sluice", "prod"}), "");
}

}  // namespace
}  // namespace sluice::k8s
