#include "engine/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>
#include <vector>

#include "engine/sha256.h"

namespace sluice {

namespace {

namespace fs = std::filesystem;

Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(msg);
  if (err == EACCES || err == EPERM) return Status::PermissionDenied(msg);
  return Status::FailedPrecondition(msg);
}

bool IsHex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Copies `src` to the new file `dst` (which must not exist) with `mode`,
// returning the hex SHA-256 of the bytes copied.
Result<std::string> CopyFileHashing(const std::string& src, const std::string& dst, mode_t mode) {
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Error(ErrnoStatus("cannot read " + src, errno));
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return Error(ErrnoStatus("cannot create " + dst, err));
  }
  Sha256 h;
  std::vector<char> buf(1 << 17);
  Status st;
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      st = ErrnoStatus("cannot read " + src, errno);
      break;
    }
    h.Update(buf.data(), static_cast<size_t>(n));
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(out, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        st = ErrnoStatus("cannot write " + dst, errno);
        break;
      }
      off += w;
    }
    if (!st.ok()) break;
  }
  ::close(in);
  if (st.ok() && ::fchmod(out, mode) != 0) st = ErrnoStatus("cannot chmod " + dst, errno);
  if (::close(out) != 0 && st.ok()) st = ErrnoStatus("cannot write " + dst, errno);
  if (!st.ok()) {
    ::unlink(dst.c_str());
    return Error(st);
  }
  return h.HexDigest();
}

// Manifest mode of a file: only the owner's execute bit survives.
const char* ManifestMode(mode_t mode) { return (mode & S_IXUSR) ? "755" : "644"; }

// Stored mode: read-only, executable when the source was.
mode_t StoredFileMode(mode_t mode) { return (mode & S_IXUSR) ? 0555 : 0444; }

std::string TempName(const std::string& root) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char name[96];
  std::snprintf(name, sizeof name, "/tmp/%d-%llx-%llu", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(salt),
                static_cast<unsigned long long>(counter.fetch_add(1)));
  return root + name;
}

// Recursively copies directory `src` into the new directory `dst`, returning
// the total bytes of the files copied.
Result<int64_t> CopyTree(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  if (!fs::create_directory(dst, ec) || ec) {
    return Error(Status::FailedPrecondition("cannot create " + dst.string() + ": " + ec.message()));
  }
  int64_t total = 0;
  for (fs::directory_iterator it(src, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& from = it->path();
    fs::path to = dst / from.filename();
    struct stat st;
    if (::lstat(from.c_str(), &st) != 0) return Error(ErrnoStatus("cannot stat " + from.string(), errno));
    if (S_ISDIR(st.st_mode)) {
      auto n = CopyTree(from, to);
      if (!n) return n;
      total += *n;
    } else if (S_ISREG(st.st_mode)) {
      auto hex = CopyFileHashing(from.string(), to.string(), StoredFileMode(st.st_mode));
      if (!hex) return Error(hex.error());
      total += st.st_size;
    } else if (S_ISLNK(st.st_mode)) {
      fs::path target = fs::read_symlink(from, ec);
      if (ec) return Error(Status::FailedPrecondition("cannot read link " + from.string()));
      fs::create_symlink(target, to, ec);
      if (ec) return Error(Status::FailedPrecondition("cannot create link " + to.string()));
    } else {
      return Error(Status::InvalidArgument(from.string() +
                                           " is not a regular file, directory or symlink; "
                                           "artifacts can only hold those"));
    }
  }
  if (ec) return Error(Status::FailedPrecondition("cannot list " + src.string() + ": " + ec.message()));
  return total;
}

struct ManifestEntry {
  std::string rel;
  std::string line;
};

Status CollectManifest(const fs::path& root, const fs::path& dir, std::vector<ManifestEntry>* out,
                       int64_t* size) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    std::string rel = p.lexically_relative(root).generic_string();
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return ErrnoStatus("cannot stat " + p.string(), errno);
    if (S_ISDIR(st.st_mode)) {
      out->push_back({rel, "d 755 - " + rel + "\n"});
      SLUICE_RETURN_IF_ERROR(CollectManifest(root, p, out, size));
    } else if (S_ISREG(st.st_mode)) {
      auto hex = Sha256File(p.string());
      if (!hex) return hex.error();
      out->push_back({rel, std::string("f ") + ManifestMode(st.st_mode) + " " + *hex + " " + rel + "\n"});
      *size += st.st_size;
    } else if (S_ISLNK(st.st_mode)) {
      fs::path target = fs::read_symlink(p, ec);
      if (ec) return Status::FailedPrecondition("cannot read link " + p.string());
      out->push_back({rel, "l 777 " + Sha256Hex(target.string()) + " " + rel + "\n"});
    } else {
      return Status::InvalidArgument(p.string() +
                                     " is not a regular file, directory or symlink; "
                                     "artifacts can only hold those");
    }
  }
  if (ec) return Status::FailedPrecondition("cannot list " + dir.string() + ": " + ec.message());
  return Status::Ok();
}

Result<std::string> Manifest(const std::string& dir, int64_t* size) {
  std::vector<ManifestEntry> entries;
  *size = 0;
  Status st = CollectManifest(dir, dir, &entries, size);
  if (!st.ok()) return Error(st);
  std::sort(entries.begin(), entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.rel < b.rel; });
  std::string text;
  for (const auto& e : entries) text += e.line;
  return text;
}

}  // namespace

FileArtifactStore::FileArtifactStore(std::string state_dir) {
  std::error_code ec;
  fs::path abs = fs::absolute(state_dir, ec);
  root_ = ((ec ? fs::path(state_dir) : abs) / "cas").string();
}

std::string FileArtifactStore::PathFor(const std::string& hex) const {
  return root_ + "/sha256/" + hex.substr(0, 2) + "/" + hex;
}

Result<std::string> FileArtifactStore::ManifestOf(const std::string& dir) {
  int64_t size = 0;
  return Manifest(dir, &size);
}

Result<std::string> FileArtifactStore::DigestOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Error(ErrnoStatus("cannot read artifact " + path, errno));
  if (S_ISDIR(st.st_mode)) {
    auto manifest = ManifestOf(path);
    if (!manifest) return manifest;
    return "sha256:" + Sha256Hex(*manifest);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(Status::InvalidArgument(path + " is not a regular file or directory"));
  }
  auto hex = Sha256File(path);
  if (!hex) return hex;
  return "sha256:" + *hex;
}

Result<ArtifactRecord> FileArtifactStore::Put(const std::string& path, ArtifactType type) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Error(ErrnoStatus("cannot read artifact " + path, errno));
  bool is_dir = S_ISDIR(st.st_mode);
  if (!is_dir && !S_ISREG(st.st_mode)) {
    return Error(Status::InvalidArgument(path + " is not a regular file or directory"));
  }
  auto record = [&](const std::string& hex, int64_t size) {
    ArtifactRecord r;
    r.digest = "sha256:" + hex;
    r.uri = "file://" + PathFor(hex);
    r.type = type;
    r.size = size;
    r.is_directory = is_dir;
    return r;
  };

  // Present already? Then storing is a no-op.
  int64_t size = 0;
  std::string hex;
  if (is_dir) {
    auto manifest = Manifest(path, &size);
    if (!manifest) return Error(manifest.error());
    hex = Sha256Hex(*manifest);
  } else {
    auto h = Sha256File(path);
    if (!h) return Error(h.error());
    hex = *h;
    size = st.st_size;
  }
  std::error_code ec;
  if (fs::exists(PathFor(hex), ec)) return record(hex, size);

  // Copy into a temporary name, hash what was copied (the source may change
  // under us: the stored bytes must match their name), then rename.
  fs::create_directories(root_ + "/tmp", ec);
  if (ec) return Error(Status::FailedPrecondition("cannot create " + root_ + "/tmp: " + ec.message()));
  std::string tmp = TempName(root_);
  if (is_dir) {
    auto copied = CopyTree(path, tmp);
    if (copied) {
      auto manifest = Manifest(tmp, &size);
      if (manifest) {
        hex = Sha256Hex(*manifest);
      } else {
        copied = Error(manifest.error());
      }
    }
    if (!copied) {
      fs::remove_all(tmp, ec);
      return Error(copied.error());
    }
  } else {
    auto copied = CopyFileHashing(path, tmp, StoredFileMode(st.st_mode));
    if (!copied) return Error(copied.error());
    hex = *copied;
    struct stat cst;
    if (::stat(tmp.c_str(), &cst) == 0) size = cst.st_size;
  }
  std::string dest = PathFor(hex);
  fs::create_directories(fs::path(dest).parent_path(), ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    return Error(Status::FailedPrecondition("cannot create " + fs::path(dest).parent_path().string()));
  }
  if (::rename(tmp.c_str(), dest.c_str()) != 0) {
    int err = errno;
    fs::remove_all(tmp, ec);
    // A concurrent Put of the same content won the race: same bytes, fine.
    if (!(is_dir && (err == EEXIST || err == ENOTEMPTY))) {
      return Error(ErrnoStatus("cannot move artifact into " + dest, err));
    }
  }
  return record(hex, size);
}

Result<std::string> FileArtifactStore::LocalPath(const std::string& digest) {
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  if (!IsHex64(hex)) {
    return Error(Status::InvalidArgument("'" + digest +
                                         "' is not a sha256 digest (expected sha256:<64 hex>)"));
  }
  std::string path = PathFor(hex);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return Error(Status::NotFound("artifact " + digest + " is not in the store at " + root_ +
                                  " (its bytes were removed)"));
  }
  return path;
}

}  // namespace sluice
