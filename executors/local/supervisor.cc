#include "executors/local/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/process.h"
#include "engine/text.h"

namespace sluice::local {

namespace {

std::string ReadWhole(const std::string& path, bool* found) {
  std::ifstream in(path, std::ios::binary);
  *found = static_cast<bool>(in);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr const char* kMagic = "sluice-supervise 1";

// The "key value" lines after the magic line; nullopt when the magic line
// is missing or the file does not end with a newline (a torn write).
std::optional<std::map<std::string, std::string>> ParseKeyValues(const std::string& text) {
  if (text.empty() || text.back() != '\n') return std::nullopt;
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kMagic) return std::nullopt;
  std::map<std::string, std::string> out;
  while (std::getline(in, line)) {
    size_t sp = line.find(' ');
    if (sp == std::string::npos) return std::nullopt;
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

template <typename T>
bool ParseNumber(const std::string& s, T* out) {
  std::istringstream in(s);
  in >> *out;
  return in && in.peek() == std::char_traits<char>::eof();
}

bool ParseIdentity(const std::string& s, ProcessIdentity* out) {
  std::istringstream in(s);
  int64_t pid = 0;
  in >> pid >> out->start_ticks;
  out->pid = static_cast<pid_t>(pid);
  return in && pid > 0 && in.peek() == std::char_traits<char>::eof();
}

}  // namespace

Result<uint64_t> ProcessStartTicks(pid_t pid) {
  bool found = false;
  std::string stat = ReadWhole("/proc/" + std::to_string(pid) + "/stat", &found);
  if (!found || stat.empty()) return Error(Status::NotFound("no process " + std::to_string(pid)));
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // the fields start after the last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return Error(Status::Internal("cannot parse /proc/" + std::to_string(pid) + "/stat"));
  std::istringstream in(stat.substr(close + 1));
  std::string field;
  // Field 3 is the state; the start time is field 22.
  std::string state;
  in >> state;
  if (state == "Z" || state == "X") return Error(Status::NotFound("process " + std::to_string(pid) + " has ended"));
  for (int i = 4; i < 22 && in >> field; ++i) {
  }
  uint64_t ticks = 0;
  if (!(in >> ticks)) return Error(Status::Internal("cannot parse /proc/" + std::to_string(pid) + "/stat"));
  return ticks;
}

std::string BootId() {
  bool found = false;
  std::string id = ReadWhole("/proc/sys/kernel/random/boot_id", &found);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

bool IsAlive(const ProcessIdentity& who, const std::string& boot_id) {
  if (who.pid <= 0) return false;
  if (!boot_id.empty()) {
    std::string now = BootId();
    if (!now.empty() && now != boot_id) return false;
  }
  auto ticks = ProcessStartTicks(who.pid);
  return ticks && *ticks == who.start_ticks;
}

AttemptFiles AttemptFiles::For(const std::string& log_path, const std::string& replica) {
  std::string base = log_path;
  if (base.size() > 4 && base.compare(base.size() - 4, 4, ".log") == 0) base.resize(base.size() - 4);
  if (!replica.empty()) base += "." + replica;
  return AttemptFiles{base + ".lock", base + ".pid", base + ".status"};
}

Status WriteFileAtomically(const std::string& path, const std::string& text, bool durable) {
  const std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& what) {
    return Status::Internal("cannot " + what + " " + path + ": " + ErrnoText(errno));
  };
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("create");
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = fail("write");
      close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (durable && fsync(fd) != 0) {
    Status s = fail("fsync");
    close(fd);
    return s;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail("rename onto");
  if (!durable) return Status::Ok();
  std::string dir = path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
  int dfd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return Status::Ok();
}

int SignalSupervisors(const std::string& log_path, int sig) {
  namespace fs = std::filesystem;
  const fs::path single = AttemptFiles::For(log_path, "").pid;
  const std::string dir = single.parent_path().string();
  // <base>.pid, and <base>.<replica>.pid for each replica.
  const std::string stem = single.filename().string();
  const std::string prefix = stem.substr(0, stem.size() - 3);  // "<base>."
  int signalled = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < prefix.size() + 3 || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - 4, 4, ".pid") != 0) {
      continue;
    }
    const std::string pid_path = it->path().string();
    const std::string status_path = pid_path.substr(0, pid_path.size() - 4) + ".status";
    if (fs::exists(status_path, ec)) continue;  // it has ended
    auto pf = ReadPidFile(pid_path);
    if (pf && SignalStep(*pf, sig == SIGUSR2 ? SIGKILL : sig)) ++signalled;
  }
  return signalled;
}

bool SignalStep(const PidFile& pf, int sig) {
  if (!IsAlive(pf.supervisor, pf.boot_id)) return false;
  // Through a pidfd, checked again once open, so the signal cannot reach
  // a process that took over the pid.
  int fd = PidfdOpen(pf.supervisor.pid);
  if (fd < 0) return false;
  bool sent = false;
  if (IsAlive(pf.supervisor, pf.boot_id)) {
    siginfo_t info{};
    info.si_signo = SIGRTMIN + kStepSignalOffset;
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_ptr = reinterpret_cast<void*>(
        (static_cast<uint64_t>(sig) << 32) | static_cast<uint32_t>(pf.step.pid));
    sent = syscall(SYS_pidfd_send_signal, fd, info.si_signo, &info, 0) == 0;
  }
  close(fd);
  return sent;
}

std::string FormatPidFile(const PidFile& f) {
  std::ostringstream out;
  out << kMagic << "\n"
      << "boot_id " << f.boot_id << "\n"
      << "supervisor " << f.supervisor.pid << " " << f.supervisor.start_ticks << "\n"
      << "step " << f.step.pid << " " << f.step.start_ticks << "\n"
      << "started_ns " << f.started_ns << "\n";
  return out.str();
}

std::string FormatStatusFile(const StatusFile& f) {
  std::ostringstream out;
  out << kMagic << "\n"
      << "wait_status " << f.wait_status << "\n"
      << "exec_errno " << f.exec_errno << "\n"
      << "finished_ns " << f.finished_ns << "\n";
  return out.str();
}

Result<PidFile> ReadPidFile(const std::string& path) {
  bool found = false;
  std::string text = ReadWhole(path, &found);
  if (!found) return Error(Status::NotFound(path + " does not exist"));
  auto kv = ParseKeyValues(text);
  PidFile f;
  if (!kv || !kv->count("boot_id") || !kv->count("supervisor") || !kv->count("step") ||
      !kv->count("started_ns") || !ParseIdentity(kv->at("supervisor"), &f.supervisor) ||
      !ParseIdentity(kv->at("step"), &f.step) || !ParseNumber(kv->at("started_ns"), &f.started_ns)) {
    return Error(Status::Internal(path + " is not a complete sluice-supervise pid file"));
  }
  f.boot_id = kv->at("boot_id");
  return f;
}

Result<StatusFile> ReadStatusFile(const std::string& path) {
  bool found = false;
  std::string text = ReadWhole(path, &found);
  if (!found) return Error(Status::NotFound(path + " does not exist"));
  auto kv = ParseKeyValues(text);
  StatusFile f;
  if (!kv || !kv->count("wait_status") || !kv->count("exec_errno") || !kv->count("finished_ns") ||
      !ParseNumber(kv->at("wait_status"), &f.wait_status) ||
      !ParseNumber(kv->at("exec_errno"), &f.exec_errno) ||
      !ParseNumber(kv->at("finished_ns"), &f.finished_ns)) {
    return Error(Status::Internal(path + " is not a complete sluice-supervise status file"));
  }
  return f;
}

namespace {

void AppendU32(std::string* out, uint32_t n) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((n >> shift) & 0xff));
}

// Takes a 4-byte big-endian number off the front of `in`; false when it is
// shorter.
bool TakeU32(std::string_view* in, uint32_t* n) {
  if (in->size() < 4) return false;
  *n = 0;
  for (size_t i = 0; i < 4; ++i) *n = (*n << 8) | static_cast<unsigned char>((*in)[i]);
  in->remove_prefix(4);
  return true;
}

}  // namespace

std::string EncodeLogMasks(const std::vector<std::string>& masks) {
  std::string out;
  AppendU32(&out, static_cast<uint32_t>(masks.size()));
  for (const auto& m : masks) {
    AppendU32(&out, static_cast<uint32_t>(m.size()));
    out += m;
  }
  return out;
}

Result<std::vector<std::string>> DecodeLogMasks(std::string_view encoded) {
  uint32_t count = 0;
  if (!TakeU32(&encoded, &count)) return Error(Status::InvalidArgument("the log masks end inside their count"));
  std::vector<std::string> masks;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t n = 0;
    if (!TakeU32(&encoded, &n)) return Error(Status::InvalidArgument("the log masks end inside a length"));
    if (encoded.size() < n) return Error(Status::InvalidArgument("the log masks end inside a value"));
    masks.emplace_back(encoded.substr(0, n));
    encoded.remove_prefix(n);
  }
  if (!encoded.empty()) return Error(Status::InvalidArgument("the log masks have bytes after the last value"));
  return masks;
}

namespace {

constexpr size_t kInlineLimit = 64 * 1024;

void AppendU64(std::string* out, uint64_t n) {
  AppendU32(out, static_cast<uint32_t>(n >> 32));
  AppendU32(out, static_cast<uint32_t>(n));
}

void AppendString(std::string* out, std::string_view s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

bool TakeU64(std::string_view* in, uint64_t* n) {
  uint32_t hi = 0, lo = 0;
  if (!TakeU32(in, &hi) || !TakeU32(in, &lo)) return false;
  *n = (static_cast<uint64_t>(hi) << 32) | lo;
  return true;
}

bool TakeString(std::string_view* in, std::string* s) {
  uint32_t n = 0;
  if (!TakeU32(in, &n) || in->size() < n) return false;
  s->assign(in->substr(0, n));
  in->remove_prefix(n);
  return true;
}

bool TakeStrings(std::string_view* in, std::vector<std::string>* v) {
  uint32_t n = 0;
  if (!TakeU32(in, &n)) return false;
  v->resize(n);
  for (auto& s : *v) {
    if (!TakeString(in, &s)) return false;
  }
  return true;
}

void AppendStrings(std::string* out, const std::vector<std::string>& v) {
  AppendU32(out, static_cast<uint32_t>(v.size()));
  for (const auto& s : v) AppendString(out, s);
}

}  // namespace

std::string EncodeStartRequest(const StartRequest& r) {
  std::string out = "S";
  AppendU64(&out, r.id);
  for (const std::string* s : {&r.pid_path, &r.status_path, &r.program, &r.workdir}) AppendString(&out, *s);
  AppendStrings(&out, r.argv);
  AppendStrings(&out, r.env);
  AppendString(&out, r.masks);
  return out;
}

Result<StartRequest> DecodeStartRequest(std::string_view in) {
  StartRequest r;
  if (in.empty() || in[0] != 'S') return Error(Status::InvalidArgument("not a start request"));
  in.remove_prefix(1);
  if (!TakeU64(&in, &r.id) || !TakeString(&in, &r.pid_path) || !TakeString(&in, &r.status_path) ||
      !TakeString(&in, &r.program) || !TakeString(&in, &r.workdir) || !TakeStrings(&in, &r.argv) ||
      !TakeStrings(&in, &r.env) || !TakeString(&in, &r.masks) || !in.empty() || r.argv.empty()) {
    return Error(Status::InvalidArgument("a start request cut short or malformed"));
  }
  return r;
}

std::string EncodeControlMessage(const ControlMessage& m) {
  std::string out(1, m.kind);
  AppendU64(&out, m.id);
  AppendU64(&out, static_cast<uint64_t>(m.value));
  AppendString(&out, m.text);
  return out;
}

Result<ControlMessage> DecodeControlMessage(std::string_view in) {
  ControlMessage m;
  if (in.empty() || std::string_view("KOXED").find(in[0]) == std::string_view::npos) {
    return Error(Status::InvalidArgument("not a control message"));
  }
  m.kind = in[0];
  in.remove_prefix(1);
  uint64_t value = 0;
  if (!TakeU64(&in, &m.id) || !TakeU64(&in, &value) || !TakeString(&in, &m.text) || !in.empty()) {
    return Error(Status::InvalidArgument("a control message cut short"));
  }
  m.value = static_cast<int64_t>(value);
  return m;
}

int SendMessage(int sock, std::string_view bytes, const std::vector<int>& fds) {
  std::vector<int> attached = fds;
  int memfd = -1;
  const char kLarge = 'M';  // the message is in the last descriptor
  if (bytes.size() > kInlineLimit) {
    memfd = static_cast<int>(syscall(SYS_memfd_create, "sluice-request", MFD_CLOEXEC));
    if (memfd < 0) return errno;
    for (size_t done = 0; done < bytes.size();) {
      ssize_t n = write(memfd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = errno;
        close(memfd);
        return err;
      }
      done += static_cast<size_t>(n);
    }
    attached.push_back(memfd);
    bytes = std::string_view(&kLarge, 1);
  }
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * attached.size()));
  if (!attached.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * attached.size());
    memcpy(CMSG_DATA(c), attached.data(), sizeof(int) * attached.size());
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  if (memfd >= 0) close(memfd);
  return err;
}

int RecvMessage(int sock, std::string* bytes, std::vector<int>* fds) {
  fds->clear();
  // Received into an uninitialised buffer on the stack, then copied: sizing
  // `bytes` to the largest message first would zero 64 KiB per call, which
  // cost more than everything else both processes do per step.
  char buf[kInlineLimit + 256];
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds->push_back(fd);
    }
  }
  if (n == 0 && fds->empty()) return 0;
  bytes->assign(buf, static_cast<size_t>(n));
  if (*bytes == "M" && !fds->empty()) {
    // A large message: its bytes are in the last descriptor.
    int memfd = fds->back();
    fds->pop_back();
    bytes->clear();
    ssize_t r;
    while ((r = pread(memfd, buf, sizeof buf, static_cast<off_t>(bytes->size()))) != 0) {
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) break;
      bytes->append(buf, static_cast<size_t>(r));
    }
    close(memfd);
  }
  return 1;
}

}  // namespace sluice::local
