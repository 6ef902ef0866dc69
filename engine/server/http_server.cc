#include "engine/server/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <thread>

namespace sluice::server {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;

// How long a write may wait for the client to take bytes; as httplib's
// default write timeout.
constexpr std::chrono::seconds kWriteTimeout{5};

// The numeric address of a socket's peer (or, `local`, its own end).
std::string Address(socket_t sock, bool local, int* port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int rc = local ? ::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len)
                 : ::getpeername(sock, reinterpret_cast<sockaddr*>(&addr), &len);
  char host[NI_MAXHOST] = "", serv[NI_MAXSERV] = "";
  if (rc != 0 || ::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv,
                               sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    if (port) *port = -1;
    return "";
  }
  if (port) *port = std::atoi(serv);
  return host;
}

// Waits up to `timeout` for `events` on `sock`; true when one is ready (or
// the socket has an error or hang-up, which the next read or write reports).
bool WaitFor(socket_t sock, short events, std::chrono::milliseconds timeout) {
  pollfd p{sock, events, 0};
  auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (rc > 0) return true;
    if (rc == 0 || errno != EINTR) return false;
  }
}

// One connection as httplib's request parser reads it: buffered reads that
// each get only the time left until the current request's deadline, so a
// client cannot stretch a request by trickling bytes.
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(socket_t sock, std::string ip) : sock_(sock), ip_(std::move(ip)) {
    port_ = -1;
    (void)Address(sock_, false, &port_);
  }

  // The current request's bytes must all arrive before `deadline`.
  void SetDeadline(SteadyTime deadline) { deadline_ = deadline; }
  // True once a read ran past the deadline; writes then fail too, so the
  // client gets no answer and the connection closes.
  bool expired() const { return expired_; }
  // True when a next request's first byte is here or arrives within
  // `timeout` (or the client closed: the read then sees it).
  bool WaitForRequest(std::chrono::milliseconds timeout) const {
    return pos_ < len_ || WaitFor(sock_, POLLIN, timeout);
  }

  bool is_readable() const override {
    return pos_ < len_ || WaitFor(sock_, POLLIN, TimeLeft());
  }
  // Writable within the write timeout, and not closed by the client: a
  // streaming handler (logs?follow=true) stops when its reader has gone.
  bool is_writable() const override {
    if (expired_) return false;
    pollfd p{sock_, POLLOUT, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kWriteTimeout).count()));
    if (rc <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) return false;
    char byte;
    return ::recv(sock_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 0;  // 0: the client closed
  }
  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == len_) {
      if (expired_) return -1;
      if (!WaitFor(sock_, POLLIN, TimeLeft())) {
        expired_ = true;
        return -1;
      }
      ssize_t n;
      do n = ::recv(sock_, buf_, sizeof buf_, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      pos_ = 0;
      len_ = static_cast<size_t>(n);
    }
    size_t n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buf_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (expired_ || !WaitFor(sock_, POLLOUT, kWriteTimeout)) return -1;
    ssize_t n;
    do n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = ip_;
    port = port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = Address(sock_, true, &port);
  }
  socket_t socket() const override { return sock_; }

 private:
  std::chrono::milliseconds TimeLeft() const {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline_ - std::chrono::steady_clock::now()));
  }

  socket_t sock_;
  std::string ip_;
  int port_;
  SteadyTime deadline_{};
  bool expired_ = false;
  char buf_[4096];
  size_t pos_ = 0, len_ = 0;
};

// Runs each accepted socket's task on the accept thread itself, so that
// HttpServer::process_and_close_socket admits or refuses it at once.
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

// A refusal: a 503 if the socket takes it without waiting, then close.
void Refuse(socket_t sock, const std::string& why) {
  std::string body = "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"" + why + "\"}}";
  std::string text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)::send(sock, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

}  // namespace

HttpServer::HttpServer(const HttpLimits& limits, RefusalObserver on_refused)
    : limits_(limits), on_refused_(std::move(on_refused)) {
  new_task_queue = [] { return new InlineTaskQueue; };
  set_payload_max_length(static_cast<size_t>(limits_.max_body_bytes));
}

HttpServer::~HttpServer() { StopAndWait(); }

void HttpServer::RaiseBacklog() {
  // Linux updates the backlog of a socket that already listens.
  if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, SOMAXCONN);
}

void HttpServer::StopAndWait() {
  stop();
  std::unique_lock lock(mu_);
  stopping_ = true;
  // Wakes each connection's thread from its poll; the thread closes it.
  for (socket_t sock : open_) ::shutdown(sock, SHUT_RDWR);
  idle_cv_.wait(lock, [&] { return open_.empty(); });
}

int HttpServer::open_connections() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(open_.size());
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  std::string ip = Address(sock, false, nullptr);
  std::string refusal;
  const char* reason = nullptr;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      reason = "stopping";
      refusal = "the server is stopping";
    } else if (static_cast<int>(open_.size()) >= limits_.max_connections) {
      reason = "total";
      refusal = "too many open connections (http.maxConnections " +
                std::to_string(limits_.max_connections) + "); retry later";
    } else if (per_client_[ip] >= limits_.max_connections_per_client) {
      reason = "client";
      refusal = "too many open connections from " + ip + " (http.maxConnectionsPerClient " +
                std::to_string(limits_.max_connections_per_client) + "); retry later";
    } else {
      ++per_client_[ip];
      open_.insert(sock);
    }
    if (!refusal.empty() && per_client_[ip] == 0) per_client_.erase(ip);
  }
  if (!refusal.empty()) {
    if (on_refused_) on_refused_(reason);  // first: counted before the client hears it
    Refuse(sock, refusal);
    return false;
  }
  try {
    std::thread([this, sock, ip] {
      Serve(sock, ip);
      Release(sock, ip);
    }).detach();
  } catch (const std::system_error&) {  // no thread to be had: as over a cap
    Release(sock, ip);
    return false;
  }
  return true;
}

void HttpServer::Serve(socket_t sock, const std::string& ip) {
  DeadlineStream stream(sock, ip);
  const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(limits_.idle_timeout);
  stream.SetDeadline(std::chrono::steady_clock::now() + limits_.request_timeout);
  for (int served = 0; served < limits_.max_requests_per_connection; ++served) {
    if (served > 0) {
      if (!stream.WaitForRequest(idle)) return;
      stream.SetDeadline(std::chrono::steady_clock::now() + limits_.request_timeout);
    }
    bool last = served + 1 == limits_.max_requests_per_connection;
    {
      std::lock_guard lock(mu_);
      last = last || stopping_;
    }
    bool closed = false;
    if (!process_request(stream, last, closed, nullptr) || closed || stream.expired()) return;
  }
}

void HttpServer::Release(socket_t sock, const std::string& ip) {
  std::lock_guard lock(mu_);
  // Closed under the lock: StopAndWait never shuts down a reused number.
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  open_.erase(sock);
  if (--per_client_[ip] <= 0) per_client_.erase(ip);
  idle_cv_.notify_all();
}

}  // namespace sluice::server
