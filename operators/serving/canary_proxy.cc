#include "operators/serving/canary_proxy.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

#include <httplib.h>

#include "operators/serving/http_error.h"

namespace sluice::serving {

struct CanaryProxy::Backend {
  std::string name;
  std::string url;
  int64_t weight = 0;
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> errors{0};
};

namespace {

std::mutex g_wait_mu;
std::condition_variable g_wait_cv;

// Hop-by-hop headers (RFC 9110 7.6.1) and the ones httplib sets itself.
bool IsHopByHop(const std::string& name) {
  static const std::set<std::string> kSkip = {
      "connection", "keep-alive", "proxy-connection", "te", "trailer",
      "transfer-encoding", "upgrade", "host", "content-length"};
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  return kSkip.count(lower) > 0;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

void JsonReply(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

// One keep-alive client per backend URL per worker thread: httplib clients are
// not thread-safe, and the proxy's worker threads live as long as it does.
httplib::Client& ClientFor(const std::string& url, Duration timeout) {
  thread_local std::unordered_map<std::string, std::unique_ptr<httplib::Client>> clients;
  auto& slot = clients[url];
  if (!slot) {
    slot = std::make_unique<httplib::Client>(url);
    slot->set_keep_alive(true);
    slot->set_url_encode(false);
    slot->set_tcp_nodelay(true);
    slot->set_connection_timeout(std::chrono::seconds(2));
    slot->set_read_timeout(timeout);
    slot->set_write_timeout(timeout);
  }
  return *slot;
}

}  // namespace

Status ParseHttpUrl(const std::string& url, std::string* host, int* port) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) {
    return Status::InvalidArgument("backend URL '" + url + "' must start with http://");
  }
  std::string rest = url.substr(prefix.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos) {
    return Status::InvalidArgument("backend URL '" + url + "' must be http://HOST:PORT");
  }
  std::string port_text = rest.substr(colon + 1);
  int p = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || p > 65535) {
      return Status::InvalidArgument("backend URL '" + url + "' has a bad port");
    }
    p = p * 10 + (c - '0');
  }
  if (port_text.empty() || p <= 0 || p > 65535) {
    return Status::InvalidArgument("backend URL '" + url + "' has a bad port");
  }
  *host = rest.substr(0, colon);
  *port = p;
  return Status::Ok();
}

CanaryProxy::CanaryProxy(CanaryProxyOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<CanaryProxy>> CanaryProxy::Start(const CanaryProxyOptions& options) {
  if (options.token.empty()) {
    return Error(Status::InvalidArgument("the canary proxy needs an admin token"));
  }
  std::unique_ptr<CanaryProxy> proxy(new CanaryProxy(options));
  proxy->public_ = std::make_unique<httplib::Server>();
  proxy->admin_ = std::make_unique<httplib::Server>();
  int threads = std::max(2, options.threads);
  proxy->public_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  proxy->admin_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  proxy->public_->set_keep_alive_max_count(1000);
  // An idle keep-alive connection holds a worker thread; free it soon.
  proxy->public_->set_keep_alive_timeout(2);
  proxy->public_->set_tcp_nodelay(true);
  proxy->public_->set_read_timeout(options.upstream_timeout);
  proxy->public_->set_write_timeout(options.upstream_timeout);
  // httplib's default adds SO_REUSEPORT, which would let a second listener
  // share (and silently split) a service's port; keep SO_REUSEADDR only.
  auto exclusive = [](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  };
  proxy->public_->set_socket_options(exclusive);
  proxy->admin_->set_socket_options(exclusive);
  proxy->InstallRoutes();

  auto bind = [](httplib::Server& s, const std::string& host, int port, const char* what)
      -> Result<int> {
    if (port == 0) {
      int p = s.bind_to_any_port(host);
      if (p <= 0) {
        return Error(Status::Unavailable(std::string("cannot bind the proxy's ") + what +
                                         " listener on " + host));
      }
      return p;
    }
    if (!s.bind_to_port(host, port)) {
      return Error(Status::Unavailable(std::string("cannot bind the proxy's ") + what +
                                       " listener on " + host + ":" + std::to_string(port) +
                                       " (in use? see `ss -ltnp sport = :" +
                                       std::to_string(port) + "`)"));
    }
    return port;
  };
  auto port = bind(*proxy->public_, options.bind, options.port, "public");
  if (!port) return Error(port.error());
  auto admin_port = bind(*proxy->admin_, options.admin_bind, options.admin_port, "admin");
  if (!admin_port) return Error(admin_port.error());
  proxy->port_ = *port;
  proxy->admin_port_ = *admin_port;
  CanaryProxy* raw = proxy.get();
  proxy->public_thread_ = std::thread([raw] {
    raw->public_->listen_after_bind();
    raw->public_done_ = true;
    raw->Stop();
  });
  proxy->admin_thread_ = std::thread([raw] {
    raw->admin_->listen_after_bind();
    raw->admin_done_ = true;
    raw->Stop();
  });
  return proxy;
}

CanaryProxy::~CanaryProxy() {
  Stop();
  if (public_thread_.joinable()) public_thread_.join();
  if (admin_thread_.joinable()) admin_thread_.join();
}

void CanaryProxy::Stop() {
  if (stopped_.exchange(true)) return;
  // httplib's stop() is a no-op until its listen loop has started, so wait
  // (briefly: the threads start in Start()) for each loop to run or to end.
  for (auto [server, done] : {std::pair{public_.get(), &public_done_},
                              std::pair{admin_.get(), &admin_done_}}) {
    if (server == nullptr) continue;
    while (!done->load() && !server->is_running()) std::this_thread::yield();
    server->stop();
  }
  std::lock_guard<std::mutex> lock(g_wait_mu);
  g_wait_cv.notify_all();
}

void CanaryProxy::Wait() {
  std::unique_lock<std::mutex> lock(g_wait_mu);
  g_wait_cv.wait(lock, [this] { return stopped_.load(); });
}

std::shared_ptr<CanaryProxy::Backend> CanaryProxy::PickBackend() {
  std::lock_guard<std::mutex> lock(mu_);
  auto index = picker_.Pick();
  if (!index) return nullptr;
  return backends_[*index];
}

Status CanaryProxy::SetBackends(const std::vector<ProxyBackend>& backends) {
  std::set<std::string> names;
  for (const auto& b : backends) {
    if (b.name.empty()) return Status::InvalidArgument("a backend has no name");
    if (!names.insert(b.name).second) {
      return Status::InvalidArgument("backend name '" + b.name + "' appears twice");
    }
    if (b.weight < 0) {
      return Status::InvalidArgument("backend '" + b.name + "' has a negative weight");
    }
    std::string host;
    int port = 0;
    SLUICE_RETURN_IF_ERROR(ParseHttpUrl(b.url, &host, &port));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Backend>> next;
  std::vector<int64_t> weights;
  for (const auto& b : backends) {
    std::shared_ptr<Backend> entry;
    for (const auto& old : backends_) {
      if (old->name == b.name && old->url == b.url) {
        entry = std::make_shared<Backend>();
        entry->requests = old->requests.load();
        entry->errors = old->errors.load();
        break;
      }
    }
    if (!entry) entry = std::make_shared<Backend>();
    entry->name = b.name;
    entry->url = b.url;
    entry->weight = b.weight;
    next.push_back(entry);
    weights.push_back(b.weight);
  }
  backends_ = std::move(next);
  picker_.Reset(std::move(weights));
  return Status::Ok();
}

Json CanaryProxy::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Json list = Json::array();
  int64_t requests = 0, errors = 0;
  for (const auto& b : backends_) {
    int64_t r = b->requests.load(), e = b->errors.load();
    requests += r;
    errors += e;
    list.push_back({{"name", b->name}, {"url", b->url}, {"weight", b->weight},
                    {"requests", r}, {"errors", e}});
  }
  return {{"service", options_.service}, {"backends", list}, {"requests", requests},
          {"errors", errors}, {"unrouted", unrouted_.load()}};
}

void CanaryProxy::InstallRoutes() {
  auto forward = [this](const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<Backend> backend = PickBackend();
    if (!backend) {
      unrouted_++;
      JsonReply(res, 503,
                {{"error", "service " + options_.service +
                               " has no backend with a non-zero weight (is it deployed?)"}});
      return;
    }
    backend->requests++;
    httplib::Request up;
    up.method = req.method;
    up.path = req.target.empty() ? req.path : req.target;
    for (const auto& [k, v] : req.headers) {
      if (!IsHopByHop(k) && k != "REMOTE_ADDR" && k != "REMOTE_PORT" && k != "LOCAL_ADDR" &&
          k != "LOCAL_PORT") {
        up.headers.emplace(k, v);
      }
    }
    up.headers.emplace("X-Forwarded-For", req.remote_addr);
    up.body = req.body;
    httplib::Client& client = ClientFor(backend->url, options_.upstream_timeout);
    httplib::Result r = client.send(up);
    if (!r) {
      backend->errors++;
      JsonReply(res, 502,
                {{"error", "upstream " + backend->name + " (" + backend->url +
                               ") failed: " + DescribeHttpError(r.error())},
                 {"backend", backend->name}});
      res.set_header("X-Sluice-Backend", backend->name);
      return;
    }
    if (r->status >= 500) backend->errors++;
    res.status = r->status;
    std::string content_type = r->get_header_value("Content-Type");
    for (const auto& [k, v] : r->headers) {
      if (!IsHopByHop(k) && k != "Content-Type") res.headers.emplace(k, v);
    }
    res.set_header("X-Sluice-Backend", backend->name);
    res.set_content(r->body, content_type.empty() ? "application/octet-stream" : content_type);
  };
  const std::string any = R"(.*)";
  public_->Get(any, forward);
  public_->Post(any, forward);
  public_->Put(any, forward);
  public_->Patch(any, forward);
  public_->Delete(any, forward);
  public_->Options(any, forward);

  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (ConstantTimeEquals(req.get_header_value("Authorization"), "Bearer " + options_.token)) {
      return true;
    }
    JsonReply(res, 401, {{"error", "missing or wrong bearer token (see the service's token file)"}});
    return false;
  };
  admin_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  admin_->Get("/stats", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    JsonReply(res, 200, Stats());
  });
  admin_->Post("/stats/reset",
               [this, authorized](const httplib::Request& req, httplib::Response& res) {
                 if (!authorized(req, res)) return;
                 std::lock_guard<std::mutex> lock(mu_);
                 for (auto& b : backends_) {
                   b->requests = 0;
                   b->errors = 0;
                 }
                 unrouted_ = 0;
                 JsonReply(res, 200, {{"ok", true}});
               });
  admin_->Put("/backends", [this, authorized](const httplib::Request& req,
                                              httplib::Response& res) {
    if (!authorized(req, res)) return;
    std::vector<ProxyBackend> backends;
    try {
      Json body = Json::parse(req.body);
      for (const auto& b : body.at("backends")) {
        backends.push_back({b.at("name").get<std::string>(), b.at("url").get<std::string>(),
                            b.at("weight").get<int64_t>()});
      }
    } catch (const std::exception& e) {
      JsonReply(res, 400, {{"error", std::string("bad /backends body: ") + e.what() +
                                         " (want {\"backends\": [{name, url, weight}]})"}});
      return;
    }
    Status s = SetBackends(backends);
    if (!s.ok()) {
      JsonReply(res, 400, {{"error", s.message()}});
      return;
    }
    JsonReply(res, 200, Stats());
  });
}

Result<std::string> ReadTokenFile(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Error(Status::NotFound("token file " + path + ": " + std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    return Error(Status::PermissionDenied("token file " + path + " has mode " + mode +
                                          "; it must not be readable by group or others "
                                          "(chmod 600 " + path + ")"));
  }
  if (st.st_uid != geteuid()) {
    return Error(Status::PermissionDenied("token file " + path + " is not owned by this user"));
  }
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) return Error(Status::InvalidArgument("token file " + path + " is empty"));
  return token;
}

Result<std::string> WriteNewTokenFile(const std::string& path) {
  unsigned char bytes[32];
  {
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    if (!urandom.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) {
      return Error(Status::Internal("cannot read /dev/urandom"));
    }
  }
  static const char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  std::string tmp = path + ".tmp";
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Error(Status::FailedPrecondition("cannot create token file " + tmp + ": " +
                                            std::strerror(errno)));
  }
  std::string line = token + "\n";
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ok = (fsync(fd) == 0) && ok;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    return Error(Status::FailedPrecondition("cannot write token file " + path + ": " +
                                            std::strerror(errno)));
  }
  return token;
}

}  // namespace sluice::serving
