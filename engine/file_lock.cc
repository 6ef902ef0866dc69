#include "engine/file_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/text.h"

namespace sluice {

namespace {

Status Failed(const std::string& what, const std::string& path) {
  return Status::Internal("cannot " + what + " " + path + ": " + ErrnoText(errno));
}

struct flock WholeFile(short type) {
  struct flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  return fl;
}

}  // namespace

Result<int> OpenLockFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Error(Failed("open lock file", path));
  return fd;
}

Result<bool> TryLockExclusive(int fd) {
  struct flock fl = WholeFile(F_WRLCK);
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  return Error(Failed("lock", "descriptor " + std::to_string(fd)));
}

Result<bool> IsLockHeld(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    return Error(Failed("open lock file", path));
  }
  // F_OFD_GETLK reports a write lock that would conflict with ours; a read
  // descriptor may still ask about a write lock.
  struct flock fl = WholeFile(F_WRLCK);
  int rc = fcntl(fd, F_OFD_GETLK, &fl);
  int err = errno;
  close(fd);
  if (rc != 0) {
    errno = err;
    return Error(Failed("query the lock of", path));
  }
  return fl.l_type != F_UNLCK;
}

std::string RunDriverLockPath(const std::string& state_dir, const std::string& run_id) {
  return (std::filesystem::path(state_dir.empty() ? ".sluice" : state_dir) / "runs" / run_id /
          "driver.lock")
      .string();
}

Result<std::unique_ptr<RunDriverLock>> RunDriverLock::Acquire(const std::string& state_dir,
                                                              const std::string& run_id) {
  const std::string path = RunDriverLockPath(state_dir, run_id);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return Error(Status::Internal("cannot create the directory of " + path + ": " + ec.message()));
  auto fd = OpenLockFile(path);
  if (!fd) return Error(fd.error());
  auto taken = TryLockExclusive(*fd);
  if (!taken || !*taken) {
    close(*fd);
    if (!taken) return Error(taken.error());
    std::ifstream in(path);
    std::string pid;
    in >> pid;
    return Error(Status::FailedPrecondition(
        "run " + run_id + " is still driven by sluice process " + (pid.empty() ? "(unknown pid)" : pid) +
        "; wait for it to end, or stop it with `sluice cancel " + run_id + "`"));
  }
  std::string text = std::to_string(getpid()) + "\n";
  // The pid is only for messages; the lock is what counts.
  if (ftruncate(*fd, 0) == 0) {
    ssize_t ignored = pwrite(*fd, text.data(), text.size(), 0);
    (void)ignored;
  }
  return std::unique_ptr<RunDriverLock>(new RunDriverLock(*fd));
}

RunDriverLock::~RunDriverLock() { close(fd_); }

Result<std::optional<bool>> IsRunDriven(const std::string& state_dir, const std::string& run_id) {
  const std::string path = RunDriverLockPath(state_dir, run_id);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<bool>();
  auto held = IsLockHeld(path);
  if (!held) return Error(held.error());
  return std::optional<bool>(*held);
}

}  // namespace sluice
