// The REST client against a scripted in-process HTTP server (the seam: the
// API server's wire protocol): retries, Retry-After, error messages, and
// watches that resume from bookmarks and list again after 410 Gone.
// The live API server is exercised by kubernetes_executor_test (label k8s).

#include "executors/kubernetes/api/client.h"

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <httplib.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace sluice::k8s {
namespace {

using namespace std::chrono_literals;

TEST(WatchEventTest, ParsesEvents) {
  auto ev = ParseWatchEvent(
      R"({"type":"MODIFIED","object":{"kind":"Job","metadata":{"name":"a","resourceVersion":"7"}}})");
  ASSERT_TRUE(ev) << ev.error().ToString();
  EXPECT_EQ(ev->type, WatchEvent::Type::kModified);
  EXPECT_EQ(ev->object["metadata"]["name"], "a");

  auto bookmark = ParseWatchEvent(
      R"({"type":"BOOKMARK","object":{"kind":"Job","metadata":{"resourceVersion":"12"}}})");
  ASSERT_TRUE(bookmark);
  EXPECT_EQ(bookmark->type, WatchEvent::Type::kBookmark);

  auto gone = ParseWatchEvent(
      R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->type, WatchEvent::Type::kError);
  EXPECT_EQ(gone->object["code"], 410);

  EXPECT_EQ(ParseWatchEvent(R"({"type":"SOMETHING","object":{}})").error().message(),
            "unknown watch event type \"SOMETHING\"");
  EXPECT_EQ(ParseWatchEvent("{not json").error().message(), "malformed watch event: {not json");
}

TEST(LineSplitterTest, ReassemblesLinesAcrossChunks) {
  LineSplitter s;
  std::vector<std::string> lines;
  auto collect = [&](std::string_view l) {
    lines.emplace_back(l);
    return true;
  };
  EXPECT_TRUE(s.Feed("{\"a\":", collect));
  EXPECT_TRUE(lines.empty());
  EXPECT_TRUE(s.Feed("1}\n{\"b\":2}\r\n\n{\"c\"", collect));
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_EQ(s.pending(), 4u);
  EXPECT_TRUE(s.Feed(":3}\n", collect));
  EXPECT_EQ(lines.back(), "{\"c\":3}");
  EXPECT_EQ(s.pending(), 0u);
}

// An HTTP server on a loopback port, run on its own thread.
class FakeApiServer {
 public:
  FakeApiServer() {
    // bind_to_any_port also listen()s: connections queue in the backlog until
    // the accept loop runs, so no wait for readiness is needed.
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeApiServer() {
    server_.stop();
    thread_.join();
  }
  httplib::Server& server() { return server_; }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

RestConfig ConfigFor(int port) {
  RestConfig c;
  c.context = "test";
  c.namespace_ = "ns";
  c.cluster.name = "test";
  c.cluster.server = "http://127.0.0.1:" + std::to_string(port);
  c.user.name = "admin";
  c.user.token = "tok";
  c.source = "kubeconfig /tmp/kc (--kubeconfig)";
  return c;
}

ClientOptions FastRetries(int retries) {
  ClientOptions o;
  o.max_retries = retries;
  o.initial_backoff = Duration(1);
  o.max_backoff = Duration(2);
  return o;
}

TEST(ClientTest, RetriesHonourRetryAfterAndSendTheToken) {
  FakeApiServer api;
  std::atomic<int> hits{0};
  std::string auth;
  api.server().Get("/api/v1/namespaces/ns/pods/p", [&](const httplib::Request& req,
                                                       httplib::Response& res) {
    auth = req.get_header_value("Authorization");
    if (++hits <= 2) {
      res.status = 429;
      res.set_header("Retry-After", "0");
      res.set_content(R"({"kind":"Status","message":"slow down"})", "application/json");
      return;
    }
    res.set_content(R"({"kind":"Pod","metadata":{"name":"p"}})", "application/json");
  });
  auto client = Client::Create(ConfigFor(api.port()), FastRetries(3));
  ASSERT_TRUE(client) << client.error().ToString();
  auto pod = (*client)->Get(PodKind(), "ns", "p");
  ASSERT_TRUE(pod) << pod.error().ToString();
  EXPECT_EQ((*pod)["metadata"]["name"], "p");
  EXPECT_EQ(hits.load(), 3);
  EXPECT_EQ(auth, "Bearer tok");
  EXPECT_EQ((*client)->RequestCounts().at("GET"), 3);
}

TEST(ClientTest, ErrorsSayWhatAndWhatToDo) {
  FakeApiServer api;
  api.server().Get("/api/v1/namespaces/ns/pods/busy", [](const httplib::Request&, httplib::Response& res) {
    res.status = 503;
    res.set_content(R"({"kind":"Status","message":"etcd is sad"})", "application/json");
  });
  api.server().Post("/apis/batch/v1/namespaces/ns/jobs", [](const httplib::Request&, httplib::Response& res) {
    res.status = 403;
    res.set_content(
        R"({"kind":"Status","reason":"Forbidden","code":403,"message":"jobs.batch is forbidden: User \"sluice-limited\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"ns\""})",
        "application/json");
  });
  api.server().Get("/apis/batch/v1/namespaces/ns/jobs/x", [](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_content(R"({"kind":"Status","reason":"Unauthorized","code":401})", "application/json");
  });
  std::string server = "http://127.0.0.1:" + std::to_string(api.port());
  auto client = Client::Create(ConfigFor(api.port()), FastRetries(2));
  ASSERT_TRUE(client);
  EXPECT_EQ((*client)->Get(PodKind(), "ns", "busy").error().ToString(),
            "UNAVAILABLE: " + server + " answered 503 to get pods ns/busy after 2 retries: etcd is sad");
  EXPECT_EQ((*client)->Create(JobKind(), "ns", Json{{"metadata", {{"name", "j"}}}}).error().ToString(),
            "PERMISSION_DENIED: forbidden: jobs.batch is forbidden: User \"sluice-limited\" cannot "
            "create resource \"jobs\" in API group \"batch\" in the namespace \"ns\" (context "
            "\"test\", user \"admin\"); ask a cluster admin for an RBAC Role allowing it");
  EXPECT_EQ((*client)->Get(JobKind(), "ns", "x").error().ToString(),
            "UNAUTHENTICATED: unauthorized: " + server +
                " rejected the credentials of user \"admin\" in context \"test\"; check its "
                "token, client certificate or exec plugin in kubeconfig /tmp/kc (--kubeconfig)");
}

TEST(ClientTest, ConnectionRefusedNamesTheServerAndContext) {
  // A port nobody listens on: bind, read the port, close.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  auto client = Client::Create(ConfigFor(port), FastRetries(1));
  ASSERT_TRUE(client);
  EXPECT_EQ((*client)->Get(PodKind(), "ns", "p").error().ToString(),
            "UNAVAILABLE: cannot reach http://127.0.0.1:" + std::to_string(port) +
                ": connection refused (is the cluster up? context \"test\", user \"admin\", "
                "kubeconfig /tmp/kc (--kubeconfig))");
}

TEST(ClientTest, ServerThatAcceptsButNeverSpeaksTlsFailsAfterTheConnectTimeout) {
  // A loopback listener whose backlog completes the TCP handshake; nobody
  // ever reads or writes, so the TLS handshake never finishes.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string server = "https://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  RestConfig c = ConfigFor(0);
  c.cluster.server = server;
  // Retries allowed: the silence is not retried (each try would wait as long).
  ClientOptions o = FastRetries(5);
  o.connect_timeout = Duration(300);
  auto client = Client::Create(c, o);
  ASSERT_TRUE(client);
  EXPECT_EQ((*client)->Get(PodKind(), "ns", "p").error().ToString(),
            "UNAVAILABLE: cannot reach " + server +
                ": it accepted the connection but did not complete a TLS handshake within 300ms (is it an "
                "HTTPS Kubernetes API server? context \"test\", user \"admin\", kubeconfig /tmp/kc (--kubeconfig))");
  EXPECT_EQ((*client)->RequestCounts().count("RETRY"), 0u);
  close(fd);
}

TEST(ClientTest, NonKubernetesAnswerSaysWhatCameBack) {
  FakeApiServer api;
  api.server().Get("/api/v1/namespaces/ns/pods/p", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("<html><body>\n<h1>Not Found</h1>\n</body></html>", "text/html");
  });
  api.server().Get("/api/v1/namespaces/ns/pods/empty", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
  });
  const std::string server = "http://127.0.0.1:" + std::to_string(api.port());
  auto client = Client::Create(ConfigFor(api.port()), FastRetries(0));
  ASSERT_TRUE(client);
  EXPECT_EQ((*client)->Get(PodKind(), "ns", "p").error().ToString(),
            "NOT_FOUND: get pods ns/p: " + server +
                " answered HTTP 404 with \"<html><body> <h1>Not Found</h1> </body></html>\", not a Kubernetes "
                "Status; is it a Kubernetes API server? (context \"test\", user \"admin\", kubeconfig /tmp/kc "
                "(--kubeconfig))");
  EXPECT_EQ((*client)->Get(PodKind(), "ns", "empty").error().ToString(),
            "NOT_FOUND: get pods ns/empty: " + server +
                " answered HTTP 404 with an empty body, not a Kubernetes Status; is it a Kubernetes API server? "
                "(context \"test\", user \"admin\", kubeconfig /tmp/kc (--kubeconfig))");
}

TEST(ClientTest, BadServerUrl) {
  RestConfig c = ConfigFor(1);
  c.cluster.server = "127.0.0.1:6443";
  EXPECT_EQ(Client::Create(c).error().ToString(),
            "INVALID_ARGUMENT: cluster \"test\" server \"127.0.0.1:6443\" is not a URL (want "
            "https://host:port)");
}

std::string Job(const std::string& name, const std::string& rv) {
  return Json{{"kind", "Job"}, {"metadata", {{"name", name}, {"resourceVersion", rv}}}}.dump();
}

TEST(WatcherTest, ResumesFromBookmarksAndRelistsAfterGone) {
  FakeApiServer api;
  std::mutex mu;
  std::condition_variable cv;
  int lists = 0;
  std::vector<std::string> watch_rvs;  // resourceVersion of each watch request
  bool finished = false;               // releases the last, open stream
  api.server().Get("/apis/batch/v1/namespaces/ns/jobs", [&](const httplib::Request& req,
                                                            httplib::Response& res) {
    EXPECT_EQ(req.get_param_value("labelSelector"), "sluice.dev/run=r1");
    if (req.get_param_value("watch") != "1") {
      std::lock_guard<std::mutex> lock(mu);
      ++lists;
      Json list = {{"kind", "JobList"},
                   {"metadata", {{"resourceVersion", lists == 1 ? "10" : "20"}}},
                   {"items", Json::array()}};
      list["items"].push_back(Json::parse(Job("a", "5")));
      if (lists > 1) list["items"].push_back(Json::parse(Job("b", "15")));
      res.set_content(list.dump(), "application/json");
      return;
    }
    EXPECT_EQ(req.get_param_value("allowWatchBookmarks"), "true");
    std::string rv = req.get_param_value("resourceVersion");
    {
      std::lock_guard<std::mutex> lock(mu);
      watch_rvs.push_back(rv);
    }
    cv.notify_all();
    if (rv == "10") {
      // Too old: the server answers with an ERROR event carrying 410.
      res.set_content(
          R"({"type":"ERROR","object":{"kind":"Status","status":"Failure","reason":"Expired","code":410}})"
          "\n",
          "application/json");
    } else if (rv == "20") {
      // An event split across chunks, a bookmark, then the server closes
      // the stream (its timeoutSeconds).
      res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
        std::string ev = R"({"type":"ADDED","object":)" + Job("c", "21") + "}\n";
        sink.write(ev.data(), 10);
        sink.write(ev.data() + 10, ev.size() - 10);
        std::string bm = R"({"type":"BOOKMARK","object":{"kind":"Job","metadata":{"resourceVersion":"22"}}})"
                         "\n";
        sink.write(bm.data(), bm.size());
        sink.done();
        return true;
      });
    } else {
      // The resumed stream stays open until the test is done.
      res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait_for(lock, 10s, [&] { return finished; });
        sink.done();
        return true;
      });
    }
  });
  auto client = Client::Create(ConfigFor(api.port()), FastRetries(1));
  ASSERT_TRUE(client);
  std::vector<std::string> seen;
  int synced = 0;
  WatchHandlers h;
  h.on_event = [&](const WatchEvent& ev) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(ev.object["metadata"]["name"].get<std::string>());
    cv.notify_all();
  };
  h.on_synced = [&] {
    std::lock_guard<std::mutex> lock(mu);
    ++synced;
  };
  auto watcher = (*client)->Watch(JobKind(), "ns", "sluice.dev/run=r1", h);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return watch_rvs.size() >= 3; }))
        << "watches seen: " << watch_rvs.size();
    EXPECT_EQ(watch_rvs, (std::vector<std::string>{"10", "20", "22"}));
    EXPECT_EQ(seen, (std::vector<std::string>{"a", "a", "b", "c"}));
    EXPECT_EQ(synced, 2);
  }
  EXPECT_EQ(watcher->lists(), 2);
  // Stop() interrupts the open stream.
  watcher->Stop();
  {
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
  }
  cv.notify_all();
}

}  // namespace
}  // namespace sluice::k8s
