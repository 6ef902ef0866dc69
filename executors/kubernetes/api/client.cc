#include "executors/kubernetes/api/client.h"

// Debian's libcpp-httplib is a compiled library built with OpenSSL, zlib and
// brotli; its pkg-config flags define the same macros, and the class layout
// must match, so define them only if the build did not.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <httplib.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

#include "engine/text.h"

namespace sluice::k8s {

struct Client::Conn {
  std::unique_ptr<httplib::ClientImpl> http;
  uint64_t generation = 0;
};

namespace {

bool RetriableHttp(int status) {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

bool RetriableTransport(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
    case httplib::Error::Read:
    case httplib::Error::Write:
    case httplib::Error::ConnectionTimeout:
    case httplib::Error::SSLConnection:
    case httplib::Error::Unknown:
      return true;
    default:
      return false;
  }
}

// Why a TCP connection to host:port fails, as errno text ("connection
// refused"); "" when it connects. Used only to word an error message.
std::string ProbeTcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string h = host;
  if (!h.empty() && h.front() == '[') h = h.substr(1, h.size() - 2);
  int rc = getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return std::string("cannot resolve ") + h + ": " + gai_strerror(rc);
  std::string why = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int c = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (c != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, 3000) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        errno = err;
        c = err == 0 ? 0 : -1;
      } else {
        errno = ETIMEDOUT;
      }
    }
    int saved = errno;
    close(fd);
    if (c == 0) {
      freeaddrinfo(res);
      return "";
    }
    why = std::strerror(saved);
  }
  freeaddrinfo(res);
  std::transform(why.begin(), why.end(), why.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  return why;
}

// Writing to a connection the server has closed raises SIGPIPE, which kills
// the process by default (OpenSSL writes with plain write()). Rather than
// ignoring SIGPIPE process-wide (the disposition would leak into processes
// the local executor spawns), block it on this thread for the duration of a
// request and swallow any SIGPIPE the request caused.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        timespec zero{0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

const char* PropagationName(Propagation p) {
  switch (p) {
    case Propagation::kBackground: return "Background";
    case Propagation::kForeground: return "Foreground";
    case Propagation::kOrphan: return "Orphan";
  }
  return "Background";
}

std::string ObjectPath(const ResourceKind& kind, const std::string& ns, const std::string& name) {
  return kind.CollectionPath(ns) + "/" + UrlEncode(name);
}

}  // namespace

std::string ResourceKind::GroupResource() const {
  size_t slash = api_version.find('/');
  if (slash == std::string::npos) return plural;
  return plural + "." + api_version.substr(0, slash);
}

std::string ResourceKind::CollectionPath(const std::string& ns) const {
  std::string base = api_version.find('/') == std::string::npos ? "/api/" + api_version
                                                                : "/apis/" + api_version;
  if (namespaced && !ns.empty()) base += "/namespaces/" + UrlEncode(ns);
  return base + "/" + plural;
}

const ResourceKind& PodKind() {
  static const ResourceKind k{"v1", "Pod", "pods", true};
  return k;
}
const ResourceKind& JobKind() {
  static const ResourceKind k{"batch/v1", "Job", "jobs", true};
  return k;
}
const ResourceKind& TFJobKind() {
  static const ResourceKind k{"kubeflow.org/v1", "TFJob", "tfjobs", true};
  return k;
}
const ResourceKind& PyTorchJobKind() {
  static const ResourceKind k{"kubeflow.org/v1", "PyTorchJob", "pytorchjobs", true};
  return k;
}
const ResourceKind& PersistentVolumeClaimKind() {
  static const ResourceKind k{"v1", "PersistentVolumeClaim", "persistentvolumeclaims", true};
  return k;
}

Result<WatchEvent> ParseWatchEvent(std::string_view line) {
  Json doc = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("type") ||
      !doc["type"].is_string()) {
    std::string head(line.substr(0, 120));
    return Error(Status::InvalidArgument("malformed watch event: " + head));
  }
  WatchEvent ev;
  std::string type = doc["type"].get<std::string>();
  if (type == "ADDED") {
    ev.type = WatchEvent::Type::kAdded;
  } else if (type == "MODIFIED") {
    ev.type = WatchEvent::Type::kModified;
  } else if (type == "DELETED") {
    ev.type = WatchEvent::Type::kDeleted;
  } else if (type == "BOOKMARK") {
    ev.type = WatchEvent::Type::kBookmark;
  } else if (type == "ERROR") {
    ev.type = WatchEvent::Type::kError;
  } else {
    return Error(Status::InvalidArgument("unknown watch event type \"" + type + "\""));
  }
  if (doc.contains("object")) ev.object = std::move(doc["object"]);
  if (!ev.object.is_object()) {
    return Error(Status::InvalidArgument("watch event " + type + " has no object"));
  }
  return ev;
}

bool LineSplitter::Feed(std::string_view data,
                        const std::function<bool(std::string_view)>& on_line) {
  buffer_.append(data);
  size_t start = 0;
  bool keep_going = true;
  for (;;) {
    size_t nl = buffer_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(buffer_.data() + start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (!on_line(line)) {
      keep_going = false;
      break;
    }
  }
  buffer_.erase(0, start);
  return keep_going;
}

Client::Client(RestConfig config, ClientOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      creds_(config_.user, config_.cluster, options_.exec_plugin),
      limiter_(options_.qps, options_.burst) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(const RestConfig& config, ClientOptions options) {
  std::unique_ptr<Client> c(new Client(config, std::move(options)));
  const std::string& server = config.cluster.server;
  size_t p = server.find("://");
  if (p == std::string::npos) {
    return Error(Status::InvalidArgument("cluster \"" + config.cluster.name + "\" server \"" +
                                         server + "\" is not a URL (want https://host:port)"));
  }
  c->scheme_ = server.substr(0, p);
  if (c->scheme_ != "https" && c->scheme_ != "http") {
    return Error(Status::InvalidArgument("cluster \"" + config.cluster.name + "\" server \"" +
                                         server + "\": scheme must be https"));
  }
  std::string rest = server.substr(p + 3);
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string prefix = rest.substr(slash);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    if (!prefix.empty()) {
      return Error(Status::InvalidArgument("cluster \"" + config.cluster.name + "\" server \"" +
                                           server +
                                           "\" has a path; sluice supports only https://host:port"));
    }
    rest = rest.substr(0, slash);
  }
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    c->host_ = rest.substr(0, colon);
    try {
      c->port_ = std::stoi(rest.substr(colon + 1));
    } catch (...) {
      return Error(Status::InvalidArgument("cluster \"" + config.cluster.name + "\" server \"" +
                                           server + "\" has a bad port"));
    }
  } else {
    c->host_ = rest;
    c->port_ = c->scheme_ == "https" ? 443 : 80;
  }
  if (c->host_.size() > 2 && c->host_.front() == '[') c->host_ = c->host_.substr(1, c->host_.size() - 2);
  // Validate TLS material now, so a bad CA is reported at start-up.
  if (!config.cluster.ca_pem.empty()) {
    BIO* bio = BIO_new_mem_buf(config.cluster.ca_pem.data(),
                               static_cast<int>(config.cluster.ca_pem.size()));
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    ERR_clear_error();
    if (cert == nullptr) {
      return Error(Status::InvalidArgument("the certificate authority of cluster \"" +
                                           config.cluster.name + "\" (" +
                                           config.cluster.ca_source + ") is not a PEM certificate"));
    }
    X509_free(cert);
  }
  return c;
}

Result<std::unique_ptr<Client::Conn>> Client::NewConn(Duration read_timeout) {
  auto conn = std::make_unique<Conn>();
  std::string cert_pem, key_pem;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conn->generation = creds_generation_.load();
    cert_pem = last_client_cert_;
  }
  if (scheme_ == "https") {
    std::unique_ptr<httplib::SSLClient> ssl;
    std::string connect_host = host_;
    std::string tls_name = config_.cluster.tls_server_name.empty() ? host_
                                                                   : config_.cluster.tls_server_name;
    if (!cert_pem.empty()) {
      auto creds = creds_.Get();
      if (!creds) return Error(creds.error());
      BIO* cb = BIO_new_mem_buf(creds->client_cert_pem.data(),
                                static_cast<int>(creds->client_cert_pem.size()));
      X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
      BIO_free(cb);
      BIO* kb = BIO_new_mem_buf(creds->client_key_pem.data(),
                                static_cast<int>(creds->client_key_pem.size()));
      EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
      BIO_free(kb);
      ERR_clear_error();
      if (cert == nullptr || key == nullptr) {
        if (cert) X509_free(cert);
        if (key) EVP_PKEY_free(key);
        return Error(Status::InvalidArgument("the client certificate or key of user \"" +
                                             config_.user.name + "\" is not valid PEM"));
      }
      ssl = std::make_unique<httplib::SSLClient>(tls_name, port_, cert, key);
      X509_free(cert);  // SSL_CTX_use_* took references
      EVP_PKEY_free(key);
    } else {
      ssl = std::make_unique<httplib::SSLClient>(tls_name, port_);
    }
    if (tls_name != connect_host) ssl->set_hostname_addr_map({{tls_name, connect_host}});
    if (config_.cluster.insecure_skip_tls_verify) {
      ssl->enable_server_certificate_verification(false);
    } else {
      ssl->enable_server_certificate_verification(true);
      if (!config_.cluster.ca_pem.empty()) {
        X509_STORE* store = X509_STORE_new();
        BIO* bio = BIO_new_mem_buf(config_.cluster.ca_pem.data(),
                                   static_cast<int>(config_.cluster.ca_pem.size()));
        while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
          X509_STORE_add_cert(store, c);
          X509_free(c);
        }
        BIO_free(bio);
        ERR_clear_error();
        ssl->set_ca_cert_store(store);  // takes ownership
      }
    }
    conn->http = std::move(ssl);
  } else {
    conn->http = std::make_unique<httplib::ClientImpl>(host_, port_);
  }
  auto secs = [](Duration d) { return static_cast<time_t>(d.count() / 1000); };
  auto usecs = [](Duration d) { return static_cast<time_t>((d.count() % 1000) * 1000); };
  conn->http->set_connection_timeout(secs(options_.connect_timeout), usecs(options_.connect_timeout));
  conn->http->set_read_timeout(secs(read_timeout), usecs(read_timeout));
  conn->http->set_write_timeout(secs(options_.request_timeout), usecs(options_.request_timeout));
  conn->http->set_keep_alive(true);
  conn->http->set_tcp_nodelay(true);
  return conn;
}

std::unique_ptr<Client::Conn> Client::AcquireConn(bool* reused) {
  *reused = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!pool_.empty()) {
      auto c = std::move(pool_.back());
      pool_.pop_back();
      if (c->generation == creds_generation_.load()) {
        *reused = true;
        return c;
      }
    }
  }
  auto c = NewConn(options_.request_timeout);
  return c ? std::move(*c) : nullptr;
}

void Client::ReleaseConn(std::unique_ptr<Conn> conn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (conn->generation == creds_generation_.load() && pool_.size() < 32) {
    pool_.push_back(std::move(conn));
  }
}

Result<std::map<std::string, std::string>> Client::Headers(bool refresh) {
  auto creds = creds_.Get(refresh);
  if (!creds) return Error(creds.error());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (creds->client_cert_pem != last_client_cert_) {
      // New client certificate (first use or exec plugin rotation): drop the
      // pooled connections, which hold the old one in their SSL_CTX.
      last_client_cert_ = creds->client_cert_pem;
      creds_generation_++;
      pool_.clear();
    }
  }
  std::map<std::string, std::string> h;
  h["User-Agent"] = options_.user_agent;
  h["Accept"] = "application/json";
  if (!creds->token.empty()) {
    h["Authorization"] = "Bearer " + creds->token;
  } else if (!creds->username.empty()) {
    h["Authorization"] = "Basic " + Base64Encode(creds->username + ":" + creds->password);
  }
  return h;
}

std::string Client::Describe() const {
  std::string out;
  if (!config_.context.empty()) out += "context \"" + config_.context + "\"";
  if (!config_.user.name.empty()) {
    out += (out.empty() ? "" : ", ") + std::string("user \"") + config_.user.name + "\"";
  }
  if (config_.in_cluster) out += (out.empty() ? "" : ", ") + std::string("in-cluster");
  return out;
}

Status Client::ConnectionError(const std::string& detail) const {
  std::string why = ProbeTcp(host_, port_);
  if (why.empty()) why = detail;
  return Status::Unavailable("cannot reach " + config_.cluster.server + ": " + why +
                             " (is the cluster up? " + Describe() + ", " + config_.source + ")");
}

Status Client::HttpError(const HttpResponse& r, const std::string& what) const {
  std::string message, reason;
  Json st = Json::parse(r.body, nullptr, false);
  auto text_field = [&](const char* key) {
    return st.is_object() && st.contains(key) && st[key].is_string() ? st[key].get<std::string>() : std::string();
  };
  const bool is_status = text_field("kind") == "Status" || !text_field("message").empty() ||
                         !text_field("reason").empty();
  if (is_status) {
    message = text_field("message");
    reason = text_field("reason");
  }
  if (!is_status) {
    // Not a Kubernetes API answer (a proxy, a web server, a wrong port):
    // say what came back instead of an empty reason.
    std::string snippet = r.body.substr(0, 200);
    for (char& c : snippet)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    message = config_.cluster.server + " answered HTTP " + std::to_string(r.status) + " with " +
              (snippet.empty() ? std::string("an empty body") : "\"" + snippet + (r.body.size() > 200 ? "..." : "") + "\"") +
              ", not a Kubernetes Status; is it a Kubernetes API server? (" + Describe() + ", " + config_.source + ")";
  } else if (message.empty()) {
    message = "HTTP " + std::to_string(r.status) + (reason.empty() ? "" : " " + reason);
  }
  std::string where = " (" + Describe() + ")";
  switch (r.status) {
    case 401:
      return Status::Unauthenticated(
          "unauthorized: " + config_.cluster.server + " rejected the credentials of user \"" +
          config_.user.name + "\"" + (config_.context.empty() ? "" : " in context \"" + config_.context + "\"") +
          "; check its token, client certificate or exec plugin in " + config_.source);
    case 403:
      return Status::PermissionDenied("forbidden: " + message + where +
                                      "; ask a cluster admin for an RBAC Role allowing it");
    case 404:
      return Status::NotFound(what + ": " + message);
    case 409:
      if (reason == "AlreadyExists") return Status::AlreadyExists(message);
      return Status::FailedPrecondition(what + ": conflict: " + message);
    case 410:
      return Status::FailedPrecondition(what + ": gone: " + message);
    case 400:
    case 422:
      return Status::InvalidArgument("the API server rejected " + what + ": " + message);
    default:
      if (r.status == 429 || r.status >= 500) {
        return Status::Unavailable(config_.cluster.server + " answered " + std::to_string(r.status) +
                                   " to " + what + " after " + std::to_string(options_.max_retries) +
                                   " retries: " + message);
      }
      return Status::Internal(what + ": unexpected HTTP " + std::to_string(r.status) + ": " + message);
  }
}

Duration Client::Backoff(int attempt, const HttpResponse* r) const {
  if (r != nullptr) {
    auto it = r->headers.find("retry-after");
    if (it != r->headers.end()) {
      try {
        Duration d(static_cast<int64_t>(std::stoll(it->second)) * 1000);
        return std::min(d, options_.max_retry_after);
      } catch (...) {
        // An HTTP date or garbage: fall through to our own backoff.
      }
    }
  }
  int64_t ms = options_.initial_backoff.count();
  for (int i = 0; i < attempt && ms < options_.max_backoff.count(); ++i) ms *= 2;
  ms = std::min<int64_t>(ms, options_.max_backoff.count());
  // Up to 10% jitter so many clients do not retry in lockstep.
  static thread_local std::mt19937 rng{std::random_device{}()};
  ms += std::uniform_int_distribution<int64_t>(0, ms / 10)(rng);
  return Duration(ms);
}

void Client::Count(const std::string& method) {
  std::lock_guard<std::mutex> lock(mu_);
  counts_[method]++;
}

std::map<std::string, int64_t> Client::RequestCounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

Result<HttpResponse> Client::Do(const std::string& method, const std::string& path,
                                const std::string& body, const std::string& content_type,
                                const std::string& what, int max_retries, Priority priority) {
  const int retries = max_retries < 0 ? options_.max_retries : max_retries;
  SigpipeGuard no_sigpipe;
  bool refresh = false;
  bool refreshed = false;
  for (int attempt = 0;; ++attempt) {
    if (priority == Priority::kBackground) {
      limiter_.AcquireIdle();
    } else {
      limiter_.Acquire();
    }
    auto headers = Headers(refresh);
    if (!headers) return Error(headers.error());
    refresh = false;
    bool reused = false;
    auto conn = AcquireConn(&reused);
    if (!conn) {
      auto c = NewConn(options_.request_timeout);
      if (!c) return Error(c.error());
      conn = std::move(*c);
    }
    httplib::Request req;
    req.method = method;
    req.path = path;
    for (const auto& [k, v] : *headers) req.headers.emplace(k, v);
    if (!body.empty() || method == "POST" || method == "PATCH") {
      req.body = body;
      req.headers.emplace("Content-Type", content_type);
    }
    Count(method);
    const auto sent_at = std::chrono::steady_clock::now();
    httplib::Result res = conn->http->send(req);
    if (!res) {
      httplib::Error err = res.error();
      if ((err == httplib::Error::SSLConnection || err == httplib::Error::ConnectionTimeout) &&
          std::chrono::steady_clock::now() - sent_at >= options_.connect_timeout) {
        // Connected (or not) and then silence for the whole connect
        // timeout: a retry would wait as long again for the same silence.
        const bool tls = err == httplib::Error::SSLConnection;
        return Error(Status::Unavailable(
            "cannot reach " + config_.cluster.server + ": " +
            (tls ? "it accepted the connection but did not complete a TLS handshake"
                 : "the connection was not established") +
            " within " + std::to_string(options_.connect_timeout.count()) + "ms" +
            (tls ? " (is it an HTTPS Kubernetes API server? " : " (is the cluster up? ") + Describe() + ", " +
            config_.source + ")"));
      }
      if (err == httplib::Error::SSLServerVerification) {
        auto* ssl = dynamic_cast<httplib::SSLClient*>(conn->http.get());
        long v = ssl ? ssl->get_openssl_verify_result() : 0;
        return Error(Status::FailedPrecondition(
            "TLS: the certificate of " + config_.cluster.server + " is not trusted: " +
            (v ? X509_verify_cert_error_string(v) : "host name does not match") + " (CA from " +
            (config_.cluster.ca_source.empty() ? "the system store" : config_.cluster.ca_source) +
            "; " + Describe() + ")"));
      }
      if (err == httplib::Error::SSLLoadingCerts) {
        return Error(Status::FailedPrecondition("TLS: cannot load the certificates for " +
                                                config_.cluster.server + " (" + Describe() + ")"));
      }
      if (reused && (err == httplib::Error::Read || err == httplib::Error::Write ||
                     err == httplib::Error::Connection)) {
        // A pooled keep-alive connection the server had closed: try again
        // at once on a fresh one (as Go's transport does); not an attempt.
        Count("STALE_CONN");
        --attempt;
        continue;
      }
      if (RetriableTransport(err) && attempt < retries) {
        Count("RETRY");
        std::this_thread::sleep_for(Backoff(attempt, nullptr));
        continue;
      }
      return Error(ConnectionError(httplib::to_string(err)));
    }
    HttpResponse r;
    r.status = res->status;
    r.body = std::move(res->body);
    for (const auto& [k, v] : res->headers) {
      std::string lk = k;
      std::transform(lk.begin(), lk.end(), lk.begin(),
                     [](unsigned char ch) { return std::tolower(ch); });
      r.headers[lk] = v;
    }
    ReleaseConn(std::move(conn));
    if (r.status == 401 && !refreshed &&
        (config_.user.exec || !config_.user.token_file.empty())) {
      refreshed = true;
      refresh = true;
      --attempt;
      continue;
    }
    if (RetriableHttp(r.status) && attempt < retries) {
      Count("RETRY_" + std::to_string(r.status));
      std::this_thread::sleep_for(Backoff(attempt, &r));
      continue;
    }
    if (r.status >= 200 && r.status < 300) return r;
    return Error(HttpError(r, what));
  }
}

Result<Json> Client::Get(const ResourceKind& kind, const std::string& ns, const std::string& name) {
  auto r = Do("GET", ObjectPath(kind, ns, name), "", "",
              "get " + kind.GroupResource() + " " + ns + "/" + name);
  if (!r) return Error(r.error());
  Json j = Json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return Error(Status::Internal("the API server sent invalid JSON"));
  return j;
}

Result<ObjectList> Client::List(const ResourceKind& kind, const std::string& ns,
                                const std::string& label_selector, Priority priority) {
  ObjectList out;
  std::string cont;
  do {
    std::string path = kind.CollectionPath(ns) + "?limit=500";
    if (!label_selector.empty()) path += "&labelSelector=" + UrlEncode(label_selector);
    if (!cont.empty()) path += "&continue=" + UrlEncode(cont);
    auto r = Do("GET", path, "", "", "list " + kind.GroupResource() + " in namespace " + ns,
                /*max_retries=*/-1, priority);
    if (!r) return Error(r.error());
    Json j = Json::parse(r->body, nullptr, false);
    if (!j.is_object()) return Error(Status::Internal("the API server sent invalid JSON"));
    if (j.contains("items") && j["items"].is_array()) {
      for (auto& item : j["items"]) out.items.push_back(std::move(item));
    }
    const Json& meta = j.contains("metadata") ? j["metadata"] : Json::object();
    out.resource_version = meta.value("resourceVersion", "");
    cont = meta.value("continue", "");
  } while (!cont.empty());
  return out;
}

Result<Json> Client::Create(const ResourceKind& kind, const std::string& ns, const Json& object) {
  std::string name = object.contains("metadata") ? object["metadata"].value("name", "") : "";
  auto r = Do("POST", kind.CollectionPath(ns), object.dump(), "application/json",
              "create " + kind.GroupResource() + " " + ns + "/" + name);
  if (!r) return Error(r.error());
  Json j = Json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return Error(Status::Internal("the API server sent invalid JSON"));
  return j;
}

Result<Json> Client::MergePatch(const ResourceKind& kind, const std::string& ns,
                                const std::string& name, const Json& patch) {
  auto r = Do("PATCH", ObjectPath(kind, ns, name), patch.dump(), "application/merge-patch+json",
              "patch " + kind.GroupResource() + " " + ns + "/" + name);
  if (!r) return Error(r.error());
  Json j = Json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return Error(Status::Internal("the API server sent invalid JSON"));
  return j;
}

Status Client::Delete(const ResourceKind& kind, const std::string& ns, const std::string& name,
                      Propagation propagation, std::optional<int64_t> grace_seconds) {
  Json opts = {{"kind", "DeleteOptions"},
               {"apiVersion", "v1"},
               {"propagationPolicy", PropagationName(propagation)}};
  if (grace_seconds) opts["gracePeriodSeconds"] = *grace_seconds;
  auto r = Do("DELETE", ObjectPath(kind, ns, name), opts.dump(), "application/json",
              "delete " + kind.GroupResource() + " " + ns + "/" + name);
  if (!r && r.error().code() != StatusCode::kNotFound) return r.error();
  return Status::Ok();
}

Status Client::DeleteCollection(const ResourceKind& kind, const std::string& ns,
                                const std::string& label_selector, Propagation propagation) {
  Json opts = {{"kind", "DeleteOptions"},
               {"apiVersion", "v1"},
               {"propagationPolicy", PropagationName(propagation)}};
  std::string path = kind.CollectionPath(ns) + "?labelSelector=" + UrlEncode(label_selector);
  auto r = Do("DELETE", path, opts.dump(), "application/json",
              "delete " + kind.GroupResource() + " matching " + label_selector + " in " + ns);
  if (!r && r.error().code() != StatusCode::kNotFound) return r.error();
  return Status::Ok();
}

Result<std::string> Client::GetText(const std::string& path_and_query, int max_retries,
                                    Priority priority) {
  auto r = Do("GET", path_and_query, "", "", "get " + path_and_query, max_retries, priority);
  if (!r) return Error(r.error());
  return std::move(r->body);
}

std::unique_ptr<Watcher> Client::Watch(const ResourceKind& kind, const std::string& ns,
                                       const std::string& label_selector, WatchHandlers handlers) {
  return std::make_unique<Watcher>(this, kind, ns, label_selector, std::move(handlers));
}

Watcher::Watcher(Client* client, ResourceKind kind, std::string ns, std::string label_selector,
                 WatchHandlers handlers)
    : client_(client),
      kind_(std::move(kind)),
      ns_(std::move(ns)),
      selector_(std::move(label_selector)),
      handlers_(std::move(handlers)) {
  thread_ = std::thread([this] {
    Run();
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    cv_.notify_all();
  });
}

Watcher::~Watcher() { Stop(); }

void Watcher::Stop() {
  stop_ = true;
  cv_.notify_all();
  if (!thread_.joinable() || thread_.get_id() == std::this_thread::get_id()) return;
  {
    // A stream may be opening its socket just now, after an earlier stop()
    // found none to shut, and would then wait for the server's next byte:
    // keep shutting the active connection until the thread has returned.
    std::unique_lock<std::mutex> lock(mu_);
    while (!finished_) {
      if (active_ != nullptr) active_->http->stop();
      cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return finished_; });
    }
  }
  thread_.join();
}

void Watcher::Run() {
  std::string rv;
  int failures = 0;
  auto pause = [&](Duration d) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, d, [&] { return stop_.load(); });
  };
  while (!stop_) {
    if (rv.empty()) {
      auto list = client_->List(kind_, ns_, selector_);
      if (stop_) return;
      if (!list) {
        if (handlers_.on_error) handlers_.on_error(list.error());
        pause(client_->Backoff(std::min(failures++, 6), nullptr));
        continue;
      }
      lists_++;
      for (auto& item : list->items) {
        if (stop_) return;
        if (handlers_.on_event) handlers_.on_event(WatchEvent{WatchEvent::Type::kAdded, std::move(item)});
      }
      if (handlers_.on_synced) handlers_.on_synced();
      rv = list->resource_version;
    }
    switch (Stream(&rv)) {
      case StreamEnd::kStopped:
        return;
      case StreamEnd::kClosed:
        failures = 0;  // the server's timeoutSeconds: resume at once
        break;
      case StreamEnd::kGone:
        rv.clear();  // our resourceVersion is too old: list again
        break;
      case StreamEnd::kFailed:
        pause(client_->Backoff(std::min(failures++, 6), nullptr));
        break;
    }
  }
}

Watcher::StreamEnd Watcher::Stream(std::string* rv) {
  SigpipeGuard no_sigpipe;
  auto conn_or = client_->NewConn(Duration((client_->options_.watch_timeout_seconds + 60) * 1000));
  if (!conn_or) {
    if (handlers_.on_error) handlers_.on_error(conn_or.error());
    return StreamEnd::kFailed;
  }
  std::unique_ptr<Client::Conn> conn = std::move(*conn_or);
  auto headers = client_->Headers(false);
  if (!headers) {
    if (handlers_.on_error) handlers_.on_error(headers.error());
    return StreamEnd::kFailed;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return StreamEnd::kStopped;
    active_ = conn.get();
  }
  struct Unregister {
    Watcher* w;
    ~Unregister() {
      std::lock_guard<std::mutex> lock(w->mu_);
      w->active_ = nullptr;
    }
  } unregister{this};

  std::string path = kind_.CollectionPath(ns_) + "?watch=1&allowWatchBookmarks=true" +
                     "&timeoutSeconds=" + std::to_string(client_->options_.watch_timeout_seconds);
  if (!rv->empty()) path += "&resourceVersion=" + UrlEncode(*rv);
  if (!selector_.empty()) path += "&labelSelector=" + UrlEncode(selector_);

  client_->limiter_.Acquire();
  client_->Count("WATCH");
  streams_++;
  int status = 0;
  bool gone = false;
  std::string error_body;
  LineSplitter splitter;
  httplib::Request req;
  req.method = "GET";
  req.path = path;
  for (const auto& [k, v] : *headers) req.headers.emplace(k, v);
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (stop_) return false;
    if (status != 200) {
      error_body.append(data, len);
      return true;
    }
    return splitter.Feed(std::string_view(data, len), [&](std::string_view line) {
      auto ev = ParseWatchEvent(line);
      if (!ev) {
        spdlog::warn("watch {} in {}: {}", kind_.GroupResource(), ns_, ev.error().message());
        return true;
      }
      if (ev->type == WatchEvent::Type::kError) {
        if (ev->object.value("code", 0) == 410) {
          gone = true;
        } else {
          error_body = ev->object.dump();
        }
        return false;
      }
      if (ev->object.contains("metadata")) {
        std::string v = ev->object["metadata"].value("resourceVersion", "");
        if (!v.empty()) *rv = v;
      }
      if (ev->type == WatchEvent::Type::kBookmark) return true;
      if (handlers_.on_event) handlers_.on_event(*ev);
      return !stop_.load();
    });
  };
  httplib::Result res = conn->http->send(req);
  if (stop_) return StreamEnd::kStopped;
  if (gone || status == 410) return StreamEnd::kGone;
  if (status == 200 && error_body.empty() && res) return StreamEnd::kClosed;
  if (status != 0 && status != 200) {
    HttpResponse r{status, error_body, {}};
    if (handlers_.on_error) {
      handlers_.on_error(client_->HttpError(r, "watch " + kind_.GroupResource() + " in " + ns_));
    }
    return StreamEnd::kFailed;
  }
  if (!error_body.empty()) {
    if (handlers_.on_error) {
      handlers_.on_error(Status::Unavailable("watch " + kind_.GroupResource() + " in " + ns_ +
                                             ": error event " + error_body));
    }
    return StreamEnd::kFailed;
  }
  // The stream dropped (connection reset, read timeout): resume from *rv.
  return StreamEnd::kFailed;
}

}  // namespace sluice::k8s
