#pragma once
// FileArtifactStore: content-addressed artifact bytes on the local disk,
// under `<state_dir>/cas/sha256/<first 2 hex>/<hex>`.
//
// A file's digest is the SHA-256 of its bytes. A directory's digest is the
// SHA-256 of its manifest: one line per entry, sorted by relative path,
//   "<kind> <mode> <sha256 or -> <relative path>\n"
// with kind f (file), d (directory) or l (symlink, the digest being that of
// the link text) and mode 755 or 644 (only the owner's execute bit is kept,
// so umask differences do not change a digest). See ManifestOf().
//
// Copies are atomic: bytes go to `<state_dir>/cas/tmp/` first and are
// renamed into place, so a crash leaves either the whole artifact or none.
// Stored files are read-only (0444, or 0555 when executable); directories
// stay owner-writable so that `rm -rf .sluice` works.
//
// Thread-safety: safe to use from several threads and processes at once
// (concurrent Puts of the same content race benignly on the rename).

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "engine/store.h"

namespace sluice {

// File digests remembered by stat, the way git's index and ninja's logs
// avoid re-reading unchanged files: a file whose (device, inode, size,
// mtime_ns, ctime_ns) equal those recorded with its digest is not read
// again. The digest itself stays the SHA-256 of the bytes; the stat is only
// the proof that the bytes are the ones hashed before. ctime cannot be set by
// a user (unlike mtime with `touch -d`) and changes on every write, chmod
// and rename.
//
// Racy files (git's term) are never remembered: an entry is recorded only
// when the file's stat was the same before and after hashing, and its mtime
// and ctime are at least kRacyMargin older than the moment hashing began,
// so a write landing in the same timestamp tick as the hash cannot hide.
//
// Entries persist in a text file (one line each, "<check> <dev> <ino>
// <size> <mtime_ns> <ctime_ns> <hex> <path>", where <check> is the first 8
// hex digits of the SHA-256 of the rest), appended to with one write per
// entry; a torn or foreign line fails its check and is ignored, so a crash
// at any point costs at most a re-hash. The file is compacted on load when
// most of its lines are stale.
//
// Thread-safety: safe from several threads; several processes may share
// the file (each appends whole lines).
class FileDigestCache {
 public:
  // How much older than the start of hashing a file's mtime and ctime must
  // be for its digest to be remembered.
  static constexpr std::chrono::seconds kRacyMargin{2};

  // `file`: where entries persist, created on the first new entry; "" keeps
  // them in memory only. `read_only`: use the file's entries, never write it
  // (what `sluice plan` wants). `racy_margin`: kRacyMargin but in tests.
  explicit FileDigestCache(std::string file, bool read_only = false,
                           std::chrono::nanoseconds racy_margin = kRacyMargin);

  // Hex SHA-256 of the regular file at `path`: remembered when its stat
  // matches, read and hashed (and remembered, unless racy) otherwise.
  // Errors: those of Sha256File (kNotFound, kPermissionDenied, kInternal).
  Result<std::string> Digest(const std::string& path);

  // Files hashed (read) and digests answered from the stat so far, for tests
  // and benchmarks.
  int64_t hashed() const { return hashed_; }
  int64_t remembered() const { return remembered_; }

 private:
  struct Entry {
    uint64_t dev = 0, ino = 0;
    int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
    std::string hex;
  };
  void LoadLocked();
  void AppendLocked(const std::string& path, const Entry& e);

  std::string file_;
  bool read_only_;
  std::chrono::nanoseconds racy_margin_;
  std::mutex mu_;
  bool loaded_ = false;
  std::unordered_map<std::string, Entry> entries_;  // by path as given
  int64_t hashed_ = 0, remembered_ = 0;
};

class FileArtifactStore : public ArtifactStore {
 public:
  // `state_dir` is the store root (e.g. "/abs/.sluice"); created on first Put.
  explicit FileArtifactStore(std::string state_dir);

  // Hashes `path` (file or directory) and copies it in unless its digest is
  // present. Files whose stat matches the digest cache (see
  // FileDigestCache, persisted at `<state_dir>/cas/digests`) are not read
  // again. Errors: kNotFound (no such path), kInvalidArgument (not a
  // regular file, directory or symlink), kFailedPrecondition (disk errors).
  Result<ArtifactRecord> Put(const std::string& path, ArtifactType type) override;

  // Hex SHA-256 of a file through the same digest cache (code files).
  Result<std::string> FileDigest(const std::string& path) override;

  // Accepts "sha256:<hex>" or "<hex>". kInvalidArgument for a malformed
  // digest, kNotFound when the bytes are not here.
  Result<std::string> LocalPath(const std::string& digest) override;

  // PathFor() the digest's hex.
  Result<std::string> CachePath(const std::string& digest) override;

  // Whether `hex` is a SHA-256 digest in the store's spelling: 64 lower-case
  // hex digits.
  static bool IsHexDigest(const std::string& hex);

  // Where an artifact with this hex digest lives (whether or not present).
  std::string PathFor(const std::string& hex) const;

  // The digest ("sha256:<hex>") of a file or directory, without storing it.
  // `cache` (may be null) short-cuts unchanged files.
  static Result<std::string> DigestOf(const std::string& path, FileDigestCache* cache = nullptr);

  // The manifest text of a directory (see the file comment).
  static Result<std::string> ManifestOf(const std::string& dir, FileDigestCache* cache = nullptr);

  // The store's digest cache.
  FileDigestCache& digest_cache() { return digests_; }

  // A fresh, unused path under `<state_dir>/cas/tmp/` (the directory is
  // created) where bytes on their way into the store are written first.
  // Errors: kFailedPrecondition when the directory cannot be created.
  Result<std::string> NewTempPath();

  // Moves `tmp` (a file or directory from NewTempPath() whose bytes hash to
  // `hex`) to PathFor(hex); removes `tmp` on failure. A concurrent writer of
  // the same directory winning the rename is success. Errors:
  // kFailedPrecondition, kPermissionDenied (disk errors).
  Status Adopt(const std::string& tmp, const std::string& hex, bool is_dir);

 private:
  std::string root_;  // <state_dir>/cas
  FileDigestCache digests_;
};

}  // namespace sluice
