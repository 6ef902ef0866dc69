#include "engine/git_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "engine/file_lock.h"
#include "engine/process.h"
#include "engine/sha256.h"
#include "engine/text.h"

namespace sluice {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kForm = "git+<repo-url>@<ref>#<path>";

bool IsHexCommit(std::string_view s) {
  return s.size() == 40 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// A ref name git accepts and that cannot be taken for an option: letters,
// digits and . _ / -, not starting with '-' or '/', no "..".
bool IsRefName(std::string_view s) {
  if (s.empty() || s.size() > 255 || s.front() == '-' || s.front() == '/') return false;
  if (s.find("..") != std::string_view::npos) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '/' || c == '-')) {
      return false;
    }
  }
  return true;
}

Status Invalid(std::string_view uses, const std::string& why) {
  return Status::InvalidArgument("'" + std::string(uses) + "': " + why + " (the form is " +
                                 std::string(kForm) + ")");
}

// git with an argv; kUnavailable with its output when it exits non-zero.
Result<std::string> Git(const std::vector<std::string>& args, const std::string& what,
                        const std::string& cwd = "") {
  std::vector<std::string> argv = {"git", "-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
                                   "-c", "protocol.http.allow=always", "-c", "protocol.ssh.allow=always",
                                   "-c", "protocol.git.allow=always", "-c", "protocol.file.allow=always"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunProgramOptions options;
  options.cwd = cwd;
  options.with_stderr = true;
  options.extra_env = {{"GIT_TERMINAL_PROMPT", "0"}, {"GIT_ASKPASS", "true"}, {"LC_ALL", "C"}};
  auto r = RunProgram(argv, options);
  if (!r) return Error(Status::NotFound("cannot run git (is it installed?): " + r.error().message()));
  if (r->exit_code != 0) {
    std::string out(TrimRight(r->out, "\n\r "));
    if (out.size() > 2000) out = out.substr(0, 2000) + " ...";
    return Error(Status::Unavailable(what + ": " + (out.empty() ? "git failed" : out)));
  }
  return std::string(TrimRight(r->out, "\n\r "));
}

// Holds an exclusive lock on `path` (waiting for it) until destroyed.
class BlockingLock {
 public:
  static Result<BlockingLock> Take(const std::string& path) {
    auto fd = OpenLockFile(path);
    if (!fd) return Error(fd.error());
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    while (::fcntl(*fd, F_OFD_SETLKW, &fl) != 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(*fd);
      return Error(Status::Internal("cannot lock " + path + ": " + std::strerror(e)));
    }
    return BlockingLock(*fd);
  }
  BlockingLock(BlockingLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  BlockingLock(const BlockingLock&) = delete;
  ~BlockingLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit BlockingLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

std::string GitSource::ToString() const { return "git+" + url + "@" + ref + "#" + path; }

Result<GitSource> ParseGitSource(std::string_view uses) {
  if (!uses.starts_with("git+")) return Error(Invalid(uses, "not a git source"));
  std::string_view rest = uses.substr(4);
  const size_t hash = rest.find('#');
  if (hash == std::string_view::npos || hash + 1 == rest.size()) {
    return Error(Invalid(uses, "no '#<path>' naming the file in the repository"));
  }
  std::string_view repo_ref = rest.substr(0, hash);
  GitSource s;
  s.path = std::string(rest.substr(hash + 1));
  const size_t at = repo_ref.rfind('@');
  const size_t slash = repo_ref.rfind('/');
  if (at == std::string_view::npos || (slash != std::string_view::npos && at < slash)) {
    return Error(Invalid(uses, "no '@<ref>': pin the component to a tag, a branch or a commit"));
  }
  s.url = std::string(repo_ref.substr(0, at));
  s.ref = std::string(repo_ref.substr(at + 1));
  bool known_scheme = false;
  for (const char* scheme : {"https://", "http://", "ssh://", "git://", "file://"}) {
    if (s.url.starts_with(scheme) && s.url.size() > std::strlen(scheme)) known_scheme = true;
  }
  if (!known_scheme) {
    return Error(Invalid(uses, "the repository URL must start with https://, http://, ssh://, git:// or file://"));
  }
  if (!IsRefName(s.ref)) return Error(Invalid(uses, "'" + s.ref + "' is not a Git ref"));
  const fs::path p(s.path);
  bool escapes = p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == "..";
  if (escapes) return Error(Invalid(uses, "the path must be relative and stay inside the repository"));
  return s;
}

std::string DefaultGitCacheDir() {
  if (const char* d = std::getenv("SLUICE_CACHE_DIR"); d && *d) return std::string(d) + "/git";
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/sluice/git";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.cache/sluice/git";
}

Result<GitCheckout> FetchGitSource(const GitSource& source, const std::string& cache) {
  std::error_code ec;
  const std::string cache_dir = fs::absolute(cache, ec).lexically_normal().string();
  fs::create_directories(fs::path(cache_dir) / "repos", ec);
  fs::create_directories(fs::path(cache_dir) / "trees", ec);
  if (ec) return Error(Status::Internal("cannot create the git cache " + cache_dir + ": " + ec.message()));
  const std::string key = Sha256Hex(source.url).substr(0, 16);
  const std::string repo = cache_dir + "/repos/" + key + ".git";
  auto lock = BlockingLock::Take(cache_dir + "/repos/" + key + ".lock");
  if (!lock) return Error(lock.error());
  if (!fs::exists(repo + "/HEAD")) {
    auto init = Git({"init", "--quiet", "--bare", repo}, "cannot create the cache repository " + repo);
    if (!init) return Error(init.error());
  }
  const std::string where = source.url + " at " + source.ref;
  GitCheckout out;
  if (IsHexCommit(source.ref) &&
      Git({"--git-dir=" + repo, "cat-file", "-e", source.ref + "^{commit}"}, where)) {
    out.commit = source.ref;
  } else {
    auto fetched = Git({"--git-dir=" + repo, "fetch", "--quiet", "--no-tags", "--", source.url, source.ref},
                       "cannot fetch " + where);
    if (!fetched) return Error(fetched.error());
    auto commit = Git({"--git-dir=" + repo, "rev-parse", "--verify", "FETCH_HEAD^{commit}"},
                      "cannot resolve " + where);
    if (!commit) return Error(commit.error());
    out.commit = *commit;
  }
  if (!IsHexCommit(out.commit)) {
    return Error(Status::Unavailable("cannot resolve " + where + ": git answered '" + out.commit + "'"));
  }
  out.dir = cache_dir + "/trees/" + out.commit;
  if (fs::is_directory(out.dir)) return out;
  // Checked out beside the final name, then renamed: a tree is complete or
  // absent, also after a crash.
  const std::string tmp = out.dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Error(Status::Internal("cannot create " + tmp + ": " + ec.message()));
  auto checkout = Git({"--git-dir=" + repo, "--work-tree=" + tmp, "checkout", "--quiet", out.commit, "--", "."},
                      "cannot check out " + out.commit + " of " + source.url, tmp);
  if (!checkout) {
    fs::remove_all(tmp, ec);
    return Error(checkout.error());
  }
  fs::rename(tmp, out.dir, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    return Error(Status::Internal("cannot move the checkout into " + out.dir + ": " + ec.message()));
  }
  return out;
}

}  // namespace sluice
