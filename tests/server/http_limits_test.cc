// `sluice serve` against hostile HTTP clients (HttpServer, HttpLimits): a
// real Server on loopback, attacked with raw sockets. The attackers connect
// from other loopback addresses (127.0.0.2, ...), as clients on other hosts
// would; the good client uses 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <thread>
#include <vector>

#include "engine/server/config.h"
#include "engine/server/server.h"
#include "server_test_util.h"

namespace sluice::server {
namespace {

using testing::FakeFactory;
using testing::FakeRunControl;
using testing::MakeTempDir;
using testing::WriteFile;
using SteadyClock = std::chrono::steady_clock;

constexpr char kToken[] = "limits-token";

const char kPipeline[] = R"(apiVersion: sluice.dev/v1
kind: Pipeline
metadata:
  name: hello
steps:
  - name: a
    command: [echo, a]
)";

// A TCP connection to 127.0.0.1:`port` from `source` (a loopback address);
// -1 when it cannot be made.
int ConnectFrom(const char* source, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool Send(int fd, const std::string& text) {
  return ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
}

// Everything the server sends on `fd` until it closes the connection, or
// until `bound` passes (then `*closed` is false).
std::string ReadUntilClosed(int fd, std::chrono::milliseconds bound, bool* closed = nullptr) {
  std::string out;
  auto until = SteadyClock::now() + bound;
  if (closed) *closed = false;
  while (SteadyClock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count()))) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (closed) *closed = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class HttpLimitsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(root_);
  }

  // A server whose config holds a token and `http_section` ("" = defaults).
  void StartServer(const std::string& http_section) {
    root_ = MakeTempDir("limits");
    WriteFile(root_ + "/repo/hello.yaml", kPipeline);
    WriteFile(root_ + "/server.yaml",
              "tokens:\n  - name: ci\n    sha256: " + HashToken(kToken) + "\n" + http_section);
    ServerOptions o;
    o.pipelines_dir = root_ + "/repo";
    o.state_dir = root_ + "/state";
    o.listen = "127.0.0.1:0";
    o.config_path = root_ + "/server.yaml";
    o.run_scheduler = false;
    o.watch = false;
    server_ = std::make_unique<Server>(o, nullptr, nullptr,
                                       FakeFactory([this] { return server_->store(); }, &control_));
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::string root_;
  FakeRunControl control_;
  std::unique_ptr<Server> server_;
};

// 500 connections from one address that trickle header lines (reconnecting
// whenever the server drops one) leave an authenticated client's requests
// answered as if they were not there.
TEST_F(HttpLimitsTest, TricklingClientsDoNotDelayAnAuthenticatedClient) {
  StartServer("");  // the default limits: 32 connections per client
  const int port = server_->port();
  constexpr int kAttackers = 500;
  const std::string request_line = "GET /api/v1/pipelines HTTP/1.1\r\n";
  std::vector<int> fds(kAttackers, -1);
  for (int& fd : fds) {
    fd = ConnectFrom("127.0.0.2", port);
    ASSERT_GE(fd, 0) << "cannot connect from 127.0.0.2";
  }
  // All but 32 are refused at once with a 503; the 32 admitted hear nothing.
  int refused = 0;
  std::vector<bool> answered(kAttackers, false);
  auto until = SteadyClock::now() + std::chrono::seconds(20);
  while (refused < kAttackers - 32 && SteadyClock::now() < until) {
    std::vector<pollfd> ps;
    for (int i = 0; i < kAttackers; ++i)
      if (!answered[i]) ps.push_back({fds[i], POLLIN, 0});
    if (::poll(ps.data(), ps.size(), 200) <= 0) continue;
    for (int i = 0, j = 0; i < kAttackers; ++i) {
      if (answered[i]) continue;
      if (ps[j++].revents == 0) continue;
      answered[i] = true;
      std::string reply = ReadUntilClosed(fds[i], std::chrono::seconds(5));
      if (reply.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0) ++refused;
    }
  }
  EXPECT_EQ(refused, kAttackers - 32);
  EXPECT_NE(server_->MetricsText().find("sluice_http_connections_refused_total{reason=\"client\"} 468\n"),
            std::string::npos);
  for (int i = 0; i < kAttackers; ++i) {
    if (!answered[i]) continue;
    ::close(fds[i]);
    fds[i] = ConnectFrom("127.0.0.2", port);  // and try again, trickling
  }
  for (int fd : fds) Send(fd, request_line);

  // The trickle: one header line on every connection every 250 ms; a
  // connection the server dropped is made again.
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread trickler([&] {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return stop; })) {
      for (int& fd : fds) {
        pollfd p{fd, POLLIN, 0};
        if (fd < 0 || (::poll(&p, 1, 0) > 0) || !Send(fd, "X-Slow: 1\r\n")) {
          if (fd >= 0) ::close(fd);
          fd = ConnectFrom("127.0.0.2", port);
          if (fd >= 0) Send(fd, request_line);
        }
      }
    }
  });

  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kToken}};
  for (int i = 0; i < 5; ++i) {
    auto start = SteadyClock::now();
    auto res = client.Get("/api/v1/pipelines", auth);
    auto took = SteadyClock::now() - start;
    ASSERT_TRUE(res) << "request " << i << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200) << res->body;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    EXPECT_LT(took, std::chrono::seconds(1)) << "request " << i << " took " << ms << " ms";
    std::cout << "authenticated GET " << i << " under attack: " << ms << " ms\n";
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop; });
  }
  // The attack was in flight all along: its 32 connections, plus this one.
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::string gauge = "\nsluice_http_connections_open ";
  size_t at = metrics->body.find(gauge);
  ASSERT_NE(at, std::string::npos) << metrics->body;
  EXPECT_GE(std::stoi(metrics->body.substr(at + gauge.size())), 33);
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  trickler.join();
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
}

// A request whose headers are still trickling in when requestTimeout has
// passed is dropped without an answer, however regularly bytes arrive.
TEST_F(HttpLimitsTest, RequestStillArrivingAtItsDeadlineIsClosedWithoutAnAnswer) {
  StartServer("http:\n  requestTimeout: 500ms\n");
  int fd = ConnectFrom("127.0.0.1", server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Send(fd, "GET /healthz HTTP/1.1\r\n"));
  int lines = 0;
  bool closed = false;
  std::string heard;
  for (; lines < 100 && !closed; ++lines) {  // at most ~10 s
    heard += ReadUntilClosed(fd, std::chrono::milliseconds(100), &closed);
    if (!closed && !Send(fd, "X-Slow: 1\r\n")) closed = true;
  }
  EXPECT_TRUE(closed) << "still open after " << lines << " header lines";
  EXPECT_EQ(heard, "");
  ::close(fd);
}

// maxRequestsPerConnection: the last one is answered "Connection: close"
// and the connection ends; idleTimeout ends a kept-alive connection that
// sends nothing more.
TEST_F(HttpLimitsTest, KeepAliveEndsAfterMaxRequestsAndWhenIdle) {
  StartServer("http:\n  maxRequestsPerConnection: 3\n  idleTimeout: 200ms\n");
  const std::string get = "GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n";
  int fd = ConnectFrom("127.0.0.1", server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Send(fd, get + get + get + get));
  bool closed = false;
  std::string replies = ReadUntilClosed(fd, std::chrono::seconds(10), &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(Count(replies, "HTTP/1.1 200 OK\r\n"), 3) << replies;
  EXPECT_EQ(Count(replies, "Connection: close\r\n"), 1) << replies;
  ::close(fd);

  fd = ConnectFrom("127.0.0.1", server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Send(fd, get));
  std::string reply = ReadUntilClosed(fd, std::chrono::seconds(10), &closed);
  EXPECT_TRUE(closed) << "an idle kept-alive connection stayed open";
  EXPECT_EQ(Count(reply, "HTTP/1.1 200 OK\r\n"), 1) << reply;
  EXPECT_EQ(Count(reply, "Connection: close\r\n"), 0) << reply;
  ::close(fd);
}

// Over a cap, a connection is answered 503 and closed at once; a freed slot
// admits the next one.
TEST_F(HttpLimitsTest, ConnectionsOverTheCapsAreAnswered503) {
  StartServer("http:\n  maxConnections: 3\n  maxConnectionsPerClient: 2\n");
  const int port = server_->port();
  auto body = [](const std::string& message) {
    return "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"" + message + "\"}}";
  };
  auto refusal = [&](const std::string& message) {
    std::string b = body(message);
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: "
           "1\r\nConnection: close\r\nContent-Length: " +
           std::to_string(b.size()) + "\r\n\r\n" + b;
  };
  int a1 = ConnectFrom("127.0.0.2", port), a2 = ConnectFrom("127.0.0.2", port);
  int a3 = ConnectFrom("127.0.0.2", port);
  ASSERT_GE(a3, 0);
  bool closed = false;
  EXPECT_EQ(ReadUntilClosed(a3, std::chrono::seconds(10), &closed),
            refusal("too many open connections from 127.0.0.2 (http.maxConnectionsPerClient 2); "
                    "retry later"));
  EXPECT_TRUE(closed);
  int b1 = ConnectFrom("127.0.0.3", port);
  int c1 = ConnectFrom("127.0.0.4", port);
  ASSERT_GE(c1, 0);
  EXPECT_EQ(ReadUntilClosed(c1, std::chrono::seconds(10), &closed),
            refusal("too many open connections (http.maxConnections 3); retry later"));
  EXPECT_TRUE(closed);
  // a1 ends: its slot is free again (released by the server's thread, so
  // the next connection may still race it: retry, bounded).
  ::close(a1);
  std::string reply;
  for (int i = 0; i < 100 && reply.rfind("HTTP/1.1 200 OK", 0) != 0; ++i) {
    int fd = ConnectFrom("127.0.0.5", port);
    ASSERT_GE(fd, 0);
    Send(fd, "GET /healthz HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n");
    reply = ReadUntilClosed(fd, std::chrono::seconds(10));
    ::close(fd);
    if (reply.rfind("HTTP/1.1 200 OK", 0) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK", 0), 0u) << reply;
  for (int fd : {a2, a3, b1, c1}) ::close(fd);
}

}  // namespace
}  // namespace sluice::server
