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

#include <string>

#include "engine/store.h"

namespace sluice {

class FileArtifactStore : public ArtifactStore {
 public:
  // `state_dir` is the store root (e.g. "/abs/.sluice"); created on first Put.
  explicit FileArtifactStore(std::string state_dir);

  // Hashes `path` (file or directory) and copies it in unless its digest is
  // present. Errors: kNotFound (no such path), kInvalidArgument (not a
  // regular file, directory or symlink), kFailedPrecondition (disk errors).
  Result<ArtifactRecord> Put(const std::string& path, ArtifactType type) override;

  // Accepts "sha256:<hex>" or "<hex>". kInvalidArgument for a malformed
  // digest, kNotFound when the bytes are not here.
  Result<std::string> LocalPath(const std::string& digest) override;

  // Where an artifact with this hex digest lives (whether or not present).
  std::string PathFor(const std::string& hex) const;

  // The digest ("sha256:<hex>") of a file or directory, without storing it.
  static Result<std::string> DigestOf(const std::string& path);

  // The manifest text of a directory (see the file comment).
  static Result<std::string> ManifestOf(const std::string& dir);

 private:
  std::string root_;  // <state_dir>/cas
};

}  // namespace sluice
