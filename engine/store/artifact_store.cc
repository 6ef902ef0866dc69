#include "engine/store/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
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

Result<std::string> HashFile(const std::string& path, FileDigestCache* cache) {
  return cache ? cache->Digest(path) : Sha256File(path);
}

Status CollectManifest(const fs::path& root, const fs::path& dir, std::vector<ManifestEntry>* out,
                       int64_t* size, FileDigestCache* cache) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    std::string rel = p.lexically_relative(root).generic_string();
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return ErrnoStatus("cannot stat " + p.string(), errno);
    if (S_ISDIR(st.st_mode)) {
      out->push_back({rel, "d 755 - " + rel + "\n"});
      SLUICE_RETURN_IF_ERROR(CollectManifest(root, p, out, size, cache));
    } else if (S_ISREG(st.st_mode)) {
      auto hex = HashFile(p.string(), cache);
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

Result<std::string> Manifest(const std::string& dir, int64_t* size, FileDigestCache* cache = nullptr) {
  std::vector<ManifestEntry> entries;
  *size = 0;
  Status st = CollectManifest(dir, dir, &entries, size, cache);
  if (!st.ok()) return Error(st);
  std::sort(entries.begin(), entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.rel < b.rel; });
  std::string text;
  for (const auto& e : entries) text += e.line;
  return text;
}

int64_t Nanos(const struct timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

std::string EntryFields(const std::string& path, uint64_t dev, uint64_t ino, int64_t size, int64_t mtime_ns,
                        int64_t ctime_ns, const std::string& hex) {
  return std::to_string(dev) + " " + std::to_string(ino) + " " + std::to_string(size) + " " +
         std::to_string(mtime_ns) + " " + std::to_string(ctime_ns) + " " + hex + " " + path;
}

// "<check> <fields>\n", <check> the first 8 hex digits of SHA-256(fields).
std::string EntryLine(const std::string& fields) { return Sha256Hex(fields).substr(0, 8) + " " + fields + "\n"; }

}  // namespace

// ---------------------------------------------------------------------------
// FileDigestCache

FileDigestCache::FileDigestCache(std::string file, bool read_only, std::chrono::nanoseconds racy_margin)
    : file_(std::move(file)), read_only_(read_only), racy_margin_(racy_margin) {}

void FileDigestCache::LoadLocked() {
  if (loaded_) return;
  loaded_ = true;
  if (file_.empty()) return;
  std::ifstream in(file_, std::ios::binary);
  if (!in) return;
  std::string line;
  size_t lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    // <check> <dev> <ino> <size> <mtime_ns> <ctime_ns> <hex> <path>
    if (line.size() < 10 || line[8] != ' ') continue;
    const std::string fields = line.substr(9);
    if (Sha256Hex(fields).compare(0, 8, line, 0, 8) != 0) continue;  // torn or foreign
    std::istringstream ss(fields);
    Entry e;
    if (!(ss >> e.dev >> e.ino >> e.size >> e.mtime_ns >> e.ctime_ns >> e.hex) || !IsHex64(e.hex)) continue;
    if (ss.get() != ' ') continue;
    std::string path;
    std::getline(ss, path, '\0');
    if (path.empty()) continue;
    entries_[path] = std::move(e);
  }
  in.close();
  // Mostly stale (files rewritten over and over): rewrite it, atomically.
  if (!read_only_ && lines > 1000 && lines > 2 * entries_.size()) {
    std::string text;
    for (const auto& [path, e] : entries_)
      text += EntryLine(EntryFields(path, e.dev, e.ino, e.size, e.mtime_ns, e.ctime_ns, e.hex));
    const std::string tmp = file_ + ".tmp" + std::to_string(::getpid());
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out || ::rename(tmp.c_str(), file_.c_str()) != 0) ::unlink(tmp.c_str());
  }
}

void FileDigestCache::AppendLocked(const std::string& path, const Entry& e) {
  if (file_.empty() || read_only_ || path.find('\n') != std::string::npos) return;
  const std::string line = EntryLine(EntryFields(path, e.dev, e.ino, e.size, e.mtime_ns, e.ctime_ns, e.hex));
  int fd = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::error_code ec;
    fs::create_directories(fs::path(file_).parent_path(), ec);
    fd = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;  // a cache: without it files are just hashed again
  }
  // One write per line, so concurrent appenders never interleave within one.
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

Result<std::string> FileDigestCache::Digest(const std::string& path) {
  const auto begin = std::chrono::system_clock::now();
  struct stat before;
  const bool have_before = ::stat(path.c_str(), &before) == 0 && S_ISREG(before.st_mode);
  if (have_before) {
    std::lock_guard<std::mutex> lock(mu_);
    LoadLocked();
    auto it = entries_.find(path);
    if (it != entries_.end()) {
      const Entry& e = it->second;
      if (e.dev == static_cast<uint64_t>(before.st_dev) && e.ino == static_cast<uint64_t>(before.st_ino) &&
          e.size == static_cast<int64_t>(before.st_size) && e.mtime_ns == Nanos(before.st_mtim) &&
          e.ctime_ns == Nanos(before.st_ctim)) {
        ++remembered_;
        return e.hex;
      }
    }
  }
  auto hex = Sha256File(path);
  if (!hex) return hex;
  std::lock_guard<std::mutex> lock(mu_);
  ++hashed_;
  struct stat after;
  if (!have_before || ::stat(path.c_str(), &after) != 0) return hex;
  const int64_t limit_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>((begin - racy_margin_).time_since_epoch()).count();
  const bool same = before.st_dev == after.st_dev && before.st_ino == after.st_ino &&
                    before.st_size == after.st_size && Nanos(before.st_mtim) == Nanos(after.st_mtim) &&
                    Nanos(before.st_ctim) == Nanos(after.st_ctim);
  if (!same || Nanos(after.st_mtim) >= limit_ns || Nanos(after.st_ctim) >= limit_ns) return hex;  // racy
  Entry e{static_cast<uint64_t>(after.st_dev), static_cast<uint64_t>(after.st_ino),
          static_cast<int64_t>(after.st_size), Nanos(after.st_mtim), Nanos(after.st_ctim), *hex};
  LoadLocked();
  auto it = entries_.find(path);
  if (it != entries_.end() && it->second.dev == e.dev && it->second.ino == e.ino && it->second.size == e.size &&
      it->second.mtime_ns == e.mtime_ns && it->second.ctime_ns == e.ctime_ns && it->second.hex == e.hex)
    return hex;
  AppendLocked(path, e);
  entries_[path] = std::move(e);
  return hex;
}

// ---------------------------------------------------------------------------
// FileArtifactStore

namespace {
std::string CasRoot(const std::string& state_dir) {
  std::error_code ec;
  fs::path abs = fs::absolute(state_dir, ec);
  return ((ec ? fs::path(state_dir) : abs) / "cas").string();
}
}  // namespace

FileArtifactStore::FileArtifactStore(std::string state_dir)
    : root_(CasRoot(state_dir)), digests_(root_ + "/digests") {}

Result<std::string> FileArtifactStore::FileDigest(const std::string& path) { return digests_.Digest(path); }

Result<std::string> ArtifactStore::FileDigest(const std::string& path) { return Sha256File(path); }

Result<std::string> ArtifactStore::CachePath(const std::string& digest) { return LocalPath(digest); }

Result<ArtifactRecord> ArtifactStore::Stat(const std::string& digest, ArtifactType type, int64_t size) {
  auto path = LocalPath(digest);
  if (!path) return Error(path.error());
  std::error_code ec;
  ArtifactRecord r;
  r.digest = "sha256:" + digest.substr(digest.rfind(':') + 1);
  r.uri = "file://" + *path;
  r.type = type;
  r.size = size;
  r.is_directory = fs::is_directory(*path, ec);
  return r;
}

Result<std::string> ArtifactStore::ReadObject(const std::string& name, int64_t) {
  return Error(Status::NotFound("object " + name + ": this artifact store keeps no objects but artifacts"));
}

bool FileArtifactStore::IsHexDigest(const std::string& hex) { return IsHex64(hex); }

std::string FileArtifactStore::PathFor(const std::string& hex) const {
  return root_ + "/sha256/" + hex.substr(0, 2) + "/" + hex;
}

Result<std::string> FileArtifactStore::ManifestOf(const std::string& dir, FileDigestCache* cache) {
  int64_t size = 0;
  return Manifest(dir, &size, cache);
}

Result<std::string> FileArtifactStore::DigestOf(const std::string& path, FileDigestCache* cache) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Error(ErrnoStatus("cannot read artifact " + path, errno));
  if (S_ISDIR(st.st_mode)) {
    auto manifest = ManifestOf(path, cache);
    if (!manifest) return manifest;
    return "sha256:" + Sha256Hex(*manifest);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(Status::InvalidArgument(path + " is not a regular file or directory"));
  }
  auto hex = HashFile(path, cache);
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
    auto manifest = Manifest(path, &size, &digests_);
    if (!manifest) return Error(manifest.error());
    hex = Sha256Hex(*manifest);
  } else {
    auto h = digests_.Digest(path);
    if (!h) return Error(h.error());
    hex = *h;
    size = st.st_size;
  }
  std::error_code ec;
  if (fs::exists(PathFor(hex), ec)) return record(hex, size);

  // Copy into a temporary name, hash what was copied (the source may change
  // under us: the stored bytes must match their name), then rename.
  auto tmp_path = NewTempPath();
  if (!tmp_path) return Error(tmp_path.error());
  const std::string& tmp = *tmp_path;
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
  SLUICE_RETURN_IF_ERROR_RESULT(Adopt(tmp, hex, is_dir));
  return record(hex, size);
}

Result<std::string> FileArtifactStore::NewTempPath() {
  std::error_code ec;
  fs::create_directories(root_ + "/tmp", ec);
  if (ec) return Error(Status::FailedPrecondition("cannot create " + root_ + "/tmp: " + ec.message()));
  return TempName(root_);
}

Status FileArtifactStore::Adopt(const std::string& tmp, const std::string& hex, bool is_dir) {
  std::error_code ec;
  std::string dest = PathFor(hex);
  fs::create_directories(fs::path(dest).parent_path(), ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    return Status::FailedPrecondition("cannot create " + fs::path(dest).parent_path().string());
  }
  if (::rename(tmp.c_str(), dest.c_str()) != 0) {
    int err = errno;
    fs::remove_all(tmp, ec);
    // A concurrent Put of the same content won the race: same bytes, fine.
    if (!(is_dir && (err == EEXIST || err == ENOTEMPTY))) {
      return ErrnoStatus("cannot move artifact into " + dest, err);
    }
  }
  return Status::Ok();
}

Result<std::string> FileArtifactStore::LocalPath(const std::string& digest) {
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  if (!IsHex64(hex)) {
    return Error(Status::InvalidArgument("'" + digest +
                                         "' is not a sha256 digest (expected sha256:<64 hex>)"));
  }
  std::string path = PathFor(hex);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {  // (no fs::path: one call per cache hit)
    return Error(Status::NotFound("artifact " + digest + " is not in the store at " + root_ +
                                  " (its bytes were removed)"));
  }
  return path;
}

Result<std::string> FileArtifactStore::CachePath(const std::string& digest) {
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  if (!IsHex64(hex)) {
    return Error(Status::InvalidArgument("'" + digest + "' is not a sha256 digest (expected sha256:<64 hex>)"));
  }
  return PathFor(hex);
}

}  // namespace sluice
