#include "operators/serving/service_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "operators/serving/http_error.h"

namespace sluice::serving {
namespace fs = std::filesystem;

namespace {

Json ProcessJson(const ProcessId& p) { return {{"pid", p.pid}, {"start_time", p.start_time}}; }

ProcessId ProcessFrom(const Json& j) {
  ProcessId p;
  p.pid = j.value("pid", 0);
  p.start_time = j.value("start_time", int64_t{0});
  return p;
}

BackendState BackendFrom(const Json& j) {
  BackendState b;
  b.name = j.at("name").get<std::string>();
  b.version = j.value("version", "");
  b.model = j.value("model", "");
  b.model_digest = j.value("model_digest", "");
  b.url = j.at("url").get<std::string>();
  b.port = j.value("port", 0);
  b.process = ProcessFrom(j);
  b.command = j.value("command", std::vector<std::string>{});
  b.log = j.value("log", "");
  b.traffic_percent = j.value("traffic_percent", 0.0);
  b.deployed_at = j.value("deployed_at", "");
  b.run_id = j.value("run_id", "");
  return b;
}

}  // namespace

std::string ProxyState::Endpoint() const {
  std::string host = (bind.empty() || bind == "0.0.0.0") ? "127.0.0.1" : bind;
  return "http://" + host + ":" + std::to_string(port);
}

Json ToJson(const BackendState& b) {
  Json j = {{"name", b.name},
            {"version", b.version},
            {"model", b.model},
            {"model_digest", b.model_digest},
            {"url", b.url},
            {"port", b.port},
            {"command", b.command},
            {"log", b.log},
            {"traffic_percent", b.traffic_percent},
            {"deployed_at", b.deployed_at},
            {"run_id", b.run_id}};
  j.update(ProcessJson(b.process));
  return j;
}

Json ToJson(const ServiceState& s) {
  Json j = {{"service", s.service}, {"proxy", nullptr}, {"stable", nullptr},
            {"candidate", nullptr}};
  if (s.proxy) {
    Json p = {{"bind", s.proxy->bind},
              {"port", s.proxy->port},
              {"admin_port", s.proxy->admin_port},
              {"token_file", s.proxy->token_file},
              {"log", s.proxy->log},
              {"endpoint", s.proxy->Endpoint()}};
    p.update(ProcessJson(s.proxy->process));
    j["proxy"] = p;
  }
  if (s.stable) j["stable"] = ToJson(*s.stable);
  if (s.candidate) j["candidate"] = ToJson(*s.candidate);
  return j;
}

Status ValidateServiceName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) ok = false;
  }
  if (ok && (name.front() == '-' || name.back() == '-')) ok = false;
  if (!ok) {
    return Status::InvalidArgument(
        "service name '" + name +
        "' is not a DNS label: use lower-case letters, digits and '-', at most 63 "
        "characters, starting and ending with a letter or digit (e.g. breast-cancer)");
  }
  return Status::Ok();
}

std::string ServicesDir(const std::string& state_dir) { return state_dir + "/services"; }

std::string ServiceStatePath(const std::string& state_dir, const std::string& service) {
  return ServicesDir(state_dir) + "/" + service + ".json";
}

Result<std::string> ServiceDir(const std::string& state_dir, const std::string& service,
                               bool create) {
  std::string dir = ServicesDir(state_dir) + "/" + service;
  if (create) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      return Error(Status::FailedPrecondition("cannot create " + dir + ": " + ec.message() +
                                              " (is SLUICE_STATE_DIR writable?)"));
    }
  }
  return dir;
}

Result<std::optional<ServiceState>> LoadServiceState(const std::string& state_dir,
                                                     const std::string& service) {
  std::string path = ServiceStatePath(state_dir, service);
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT || !fs::exists(path)) return std::optional<ServiceState>();
    return Error(Status::Internal("cannot read " + path + ": " + std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    Json j = Json::parse(buffer.str());
    ServiceState s;
    s.service = j.at("service").get<std::string>();
    if (!j["proxy"].is_null()) {
      const Json& p = j["proxy"];
      ProxyState proxy;
      proxy.process = ProcessFrom(p);
      proxy.bind = p.value("bind", "127.0.0.1");
      proxy.port = p.at("port").get<int>();
      proxy.admin_port = p.at("admin_port").get<int>();
      proxy.token_file = p.at("token_file").get<std::string>();
      proxy.log = p.value("log", "");
      s.proxy = proxy;
    }
    if (!j["stable"].is_null()) s.stable = BackendFrom(j["stable"]);
    if (!j["candidate"].is_null()) s.candidate = BackendFrom(j["candidate"]);
    return std::optional<ServiceState>(std::move(s));
  } catch (const std::exception& e) {
    return Error(Status::Internal("malformed service state " + path + ": " + e.what() +
                                  " (remove it and the service's processes to start over)"));
  }
}

Status SaveServiceState(const std::string& state_dir, const ServiceState& state) {
  auto dir = ServiceDir(state_dir, state.service, /*create=*/true);
  if (!dir) return dir.error();
  std::string path = ServiceStatePath(state_dir, state.service);
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << ToJson(state).dump(2) << "\n";
    out.flush();
    if (!out) return Status::FailedPrecondition("cannot write " + tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::FailedPrecondition("cannot rename " + tmp + " to " + path + ": " +
                                      std::strerror(errno));
  }
  return Status::Ok();
}

Result<ServiceLock> ServiceLock::Acquire(const std::string& state_dir, const std::string& service,
                                         Duration timeout) {
  std::error_code ec;
  fs::create_directories(ServicesDir(state_dir), ec);
  std::string path = ServicesDir(state_dir) + "/" + service + ".lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error(Status::FailedPrecondition("cannot open lock " + path + ": " +
                                            std::strerror(errno)));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // flock has no timed form; a short back-off between tries keeps this bounded.
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int e = errno;
      close(fd);
      return Error(Status::Internal("flock " + path + ": " + std::strerror(e)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      close(fd);
      return Error(Status::DeadlineExceeded(
          "service " + service + " is locked by another deploy or validation step (" + path +
          "); wait for it to finish"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ServiceLock(fd);
}

ServiceLock::~ServiceLock() {
  if (fd_ >= 0) close(fd_);
}

Result<ProxyAdmin> ProxyAdmin::ForProxy(const ProxyState& proxy) {
  auto token = ReadTokenFile(proxy.token_file);
  if (!token) return Error(token.error());
  ProxyAdmin admin;
  admin.base_ = "http://127.0.0.1:" + std::to_string(proxy.admin_port);
  admin.token_ = *token;
  return admin;
}

namespace {
httplib::Client AdminClient(const std::string& base) {
  httplib::Client c(base);
  c.set_connection_timeout(std::chrono::seconds(2));
  c.set_read_timeout(std::chrono::seconds(10));
  return c;
}
}  // namespace

Status ProxyAdmin::SetBackends(const std::vector<ProxyBackend>& backends) const {
  Json list = Json::array();
  for (const auto& b : backends) list.push_back({{"name", b.name}, {"url", b.url}, {"weight", b.weight}});
  httplib::Client c = AdminClient(base_);
  auto r = c.Put("/backends", {{"Authorization", "Bearer " + token_}},
                 Json{{"backends", list}}.dump(), "application/json");
  if (!r) {
    return Status::Unavailable("cannot reach the canary proxy's admin API at " + base_ + ": " +
                               DescribeHttpError(r.error()));
  }
  if (r->status != 200) {
    return Status::Internal("the canary proxy refused new weights (HTTP " +
                            std::to_string(r->status) + "): " + r->body);
  }
  return Status::Ok();
}

Result<Json> ProxyAdmin::Stats() const {
  httplib::Client c = AdminClient(base_);
  auto r = c.Get("/stats", {{"Authorization", "Bearer " + token_}});
  if (!r) {
    return Error(Status::Unavailable("cannot reach the canary proxy's admin API at " + base_ +
                                     ": " + DescribeHttpError(r.error())));
  }
  if (r->status != 200) {
    return Error(Status::Internal("proxy /stats answered HTTP " + std::to_string(r->status)));
  }
  try {
    return Json::parse(r->body);
  } catch (const std::exception& e) {
    return Error(Status::Internal(std::string("proxy /stats is not JSON: ") + e.what()));
  }
}

bool ProxyAdmin::Healthy() const {
  httplib::Client c = AdminClient(base_);
  c.set_read_timeout(std::chrono::seconds(2));
  auto r = c.Get("/healthz");
  return r && r->status == 200;
}

std::string NowRfc3339() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace sluice::serving
