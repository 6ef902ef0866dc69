#pragma once
// PipelineRegistry: every pipeline file under a directory (typically a Git
// checkout), loaded and linted, reloaded on change.
//
// A file is a pipeline when its name ends in .yaml or .yml and it has a
// top-level `kind: Pipeline` line; hidden directories (.git, .sluice) are not
// searched. A file that fails to load keeps its last good version, which
// goes on being scheduled and triggered, and its diagnostics are reported
// (List()). Two files defining the same metadata.name: the first in path
// order wins and the second is reported.
//
// Thread-safety: all methods may be called from any thread. Specs are
// handed out as shared_ptr<const PipelineSpec> because a run borrows its spec
// for as long as it runs, while a reload may replace the registry's copy.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dsl/dsl.h"
#include "engine/spec.h"
#include "engine/status.h"
#include "engine/store.h"

namespace sluice::server {

using SpecPtr = std::shared_ptr<const PipelineSpec>;

// Loads one file; dsl::LoadPipelineFile by default (tests may swap it).
// The registry treats every file as untrusted: a file over
// kMaxPipelineFileBytes is not loaded, and an exception from the loader is
// reported as an error on the file (file:1:1), like any other load failure.
using PipelineLoader = std::function<dsl::LoadResult(const std::string& path)>;

// The largest pipeline file the registry loads (4 MiB).
inline constexpr int64_t kMaxPipelineFileBytes = int64_t{4} << 20;

// The default loader (dsl::LoadPipelineFile).
PipelineLoader DefaultPipelineLoader();

// One pipeline file as the registry sees it.
struct PipelineFile {
  std::string path;                // absolute
  std::string name;                // metadata.name of the good version ("" if none)
  SpecPtr spec;                    // last good version, or null
  bool ok = false;                 // the latest version loaded cleanly
  std::vector<dsl::Diagnostic> diagnostics;  // of the latest version
  std::string digest;              // sha256 of the last good version
  TimePoint loaded_at{};           // when the latest version was read
};

// What a Reload() changed.
struct ReloadReport {
  std::vector<std::string> loaded;   // files (re)loaded cleanly
  std::vector<std::string> failed;   // files whose latest version has errors
  std::vector<std::string> removed;  // files gone from the directory
  bool changed() const { return !loaded.empty() || !failed.empty() || !removed.empty(); }
};

class PipelineRegistry {
 public:
  // `dir` must exist when Reload() is called; `loader` defaults to the DSL.
  explicit PipelineRegistry(std::string dir, PipelineLoader loader = DefaultPipelineLoader());

  // Rescans the directory; (re)loads files whose size or mtime changed, or
  // every file when `force`. kNotFound when the directory is missing (the
  // registry keeps what it had).
  Result<ReloadReport> Reload(bool force);

  // All files, sorted by path.
  std::vector<PipelineFile> List() const;
  // The good version of pipeline `name`, or null.
  SpecPtr Find(const std::string& name) const;
  // Pipelines affected by a push that changed `paths` (repository-relative):
  // a path matches a pipeline when it is the pipeline file's path or one of
  // its steps' `code` files, compared as path suffixes on a '/' boundary.
  std::vector<std::string> PipelinesTouchedBy(const std::vector<std::string>& paths) const;

  const std::string& dir() const { return dir_; }

 private:
  struct FileState {
    PipelineFile file;
    int64_t mtime_ns = -1;
    int64_t size = -1;
  };

  std::string dir_;
  PipelineLoader loader_;
  mutable std::mutex mu_;
  std::map<std::string, FileState> files_;  // by absolute path
};

}  // namespace sluice::server
