#pragma once
// HttpServer: cpp-httplib's Server with limits that hostile clients cannot
// get around (HttpLimits, from the server config's `http:` section).
//
// cpp-httplib 0.11 (Debian's) bounds each read (set_read_timeout) but not a
// whole request, so a client that sends one header line every few seconds
// holds a worker thread for as long as it likes; it caps nothing at accept
// time, so a few dozen such clients take every worker of its pool and the
// API stops answering anyone. Its TaskQueue::enqueue cannot refuse work, and
// it has no accept hook. What it does offer is a virtual
// process_and_close_socket(sock), called on the accept thread through the
// TaskQueue, and a protected process_request(stream, ...) that reads and
// answers one request from any Stream. HttpServer builds on those two:
//
//  - Admission, on the accept thread: the task queue runs each accepted
//    socket's task at once, so process_and_close_socket sees the connection
//    the moment it is accepted. It counts open connections per client IP
//    and in total; one over max_connections_per_client or max_connections
//    is answered 503 (best effort, never blocking) and closed right there.
//    The listen backlog is raised to SOMAXCONN (httplib asks for 5), so a
//    burst of connections does not push a good client's SYN into a retry.
//  - Serving, on a thread of its own per admitted connection: there is
//    always a thread for an admitted connection, as the total is capped, so
//    a good client never waits behind slow ones in a queue.
//  - A whole-request deadline: the connection's Stream gives every read the
//    time left until the request's deadline (request_timeout after accept,
//    or after the first byte of a kept-alive connection's next request),
//    whatever the client trickles; past it the read fails and the
//    connection is closed without an answer.
//  - Keep-alive limits: at most max_requests_per_connection requests, and a
//    connection idle for idle_timeout between requests is closed.
//
// So a client that trickles holds at most max_connections_per_client
// connections, each for at most request_timeout, and nothing it does delays
// another client's requests. Clients that are many addresses (a botnet) can
// fill max_connections; each slot is freed within request_timeout.

#include <httplib.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "engine/server/config.h"

namespace sluice::server {

// An httplib::Server that admits, deadlines and caps connections as the file
// comment says. Owned by Server; the accept loop runs on the thread that
// calls listen_after_bind(), each admitted connection on a thread of its
// own. All public methods are thread-safe.
class HttpServer : public httplib::Server {
 public:
  // Called on the accept thread for each refused connection, with why:
  // "client", "total" or "stopping". Must not block.
  using RefusalObserver = std::function<void(const char* reason)>;

  // Applies `limits` (body size included); `on_refused` may be empty.
  // Install routes as on any httplib::Server, then bind (bind_to_port /
  // bind_to_any_port), RaiseBacklog() and listen_after_bind().
  explicit HttpServer(const HttpLimits& limits, RefusalObserver on_refused = nullptr);
  // Stops and waits for every connection's thread (StopAndWait()).
  ~HttpServer() override;

  // Raises the listen backlog after bind_to_port / bind_to_any_port.
  void RaiseBacklog();

  // Stops accepting (httplib's stop()), shuts every open connection down so
  // its thread ends (a streaming handler's next write fails), and waits for
  // those threads. Idempotent; call from any thread but a handler's.
  void StopAndWait();

  // Connections open now (admitted, not yet closed).
  int open_connections() const;

 private:
  bool process_and_close_socket(socket_t sock) override;
  // Serves requests on `sock` until the client closes it, a limit ends it or
  // the server stops; then closes it.
  void Serve(socket_t sock, const std::string& ip);
  void Release(socket_t sock, const std::string& ip);

  const HttpLimits limits_;
  const RefusalObserver on_refused_;
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::map<std::string, int> per_client_;  // open connections by peer IP
  std::set<socket_t> open_;                // sockets of the admitted connections
  bool stopping_ = false;
};

}  // namespace sluice::server
