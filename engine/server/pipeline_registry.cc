#include "engine/server/pipeline_registry.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace sluice::server {
namespace fs = std::filesystem;

namespace {

// Looks for a top-level `kind: Pipeline` line in the first 2000 lines and
// first MiB of the file: a huge data file with a .yaml name is skipped
// without reading it all.
bool HasPipelineKind(const std::string& path) {
  constexpr std::streamsize kScanBytes = 1 << 20;
  std::ifstream in(path, std::ios::binary);
  std::string head(kScanBytes, '\0');
  in.read(head.data(), kScanBytes);
  head.resize(static_cast<size_t>(in.gcount()));
  std::istringstream lines_in(head);
  std::string line;
  int lines = 0;
  while (std::getline(lines_in, line) && lines++ < 2000) {
    if (line.rfind("kind:", 0) != 0) continue;
    std::string value = line.substr(5);
    value.erase(0, value.find_first_not_of(" \t"));
    size_t end = value.find_first_of(" \t#\r");
    value = value.substr(0, end);
    if (value == "Pipeline" || value == "\"Pipeline\"" || value == "'Pipeline'") return true;
  }
  return false;
}

bool PathSuffixMatches(const std::string& full, const std::string& suffix) {
  if (suffix.empty() || suffix.size() > full.size()) return false;
  if (full.compare(full.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  return full.size() == suffix.size() || full[full.size() - suffix.size() - 1] == '/';
}

// A load that failed before the loader could say where: one error at 1:1.
dsl::LoadResult LoadFailure(const std::string& path, const std::string& message) {
  dsl::LoadResult result;
  dsl::Diagnostic d;
  d.loc.file = path;
  d.loc.line = 1;
  d.loc.column = 1;
  d.message = message;
  result.diagnostics.push_back(std::move(d));
  return result;
}

// The load boundary: whatever a file holds, and whatever the loader does
// with it short of crashing the process, the outcome is a LoadResult. Files
// over the size limit are not parsed at all; an exception becomes an error
// on the file.
dsl::LoadResult LoadIsolated(const PipelineLoader& loader, const std::string& path, int64_t size) {
  if (size > kMaxPipelineFileBytes)
    return LoadFailure(path, "the file is " + std::to_string(size) +
                                 " bytes; a pipeline file may have at most " +
                                 std::to_string(kMaxPipelineFileBytes) +
                                 " (split it, or move data out of it)");
  try {
    return loader(path);
  } catch (const std::exception& e) {
    return LoadFailure(path, std::string("the pipeline could not be loaded: ") + e.what());
  } catch (...) {
    return LoadFailure(path, "the pipeline could not be loaded (unknown error)");
  }
}

}  // namespace

PipelineLoader DefaultPipelineLoader() {
  return [](const std::string& path) { return dsl::LoadPipelineFile(path); };
}

PipelineRegistry::PipelineRegistry(std::string dir, PipelineLoader loader)
    : loader_(std::move(loader)) {
  std::error_code ec;
  fs::path abs = fs::absolute(dir, ec);
  dir_ = ec ? dir : abs.lexically_normal().string();
  if (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

Result<ReloadReport> PipelineRegistry::Reload(bool force) {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec))
    return Error(Status::NotFound(dir_ + ": pipelines directory does not exist; check --pipelines"));
  // Scan without the lock: loading is the slow part.
  struct Seen {
    int64_t mtime_ns, size;
  };
  std::map<std::string, Seen> seen;
  fs::recursive_directory_iterator it(dir_, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    std::string base = p.filename().string();
    if (it->is_directory(ec)) {
      if (!base.empty() && base[0] == '.') it.disable_recursion_pending();
      continue;
    }
    std::string ext = p.extension().string();
    if (ext != ".yaml" && ext != ".yml") continue;
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    seen[p.string()] = {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                        static_cast<int64_t>(st.st_size)};
  }

  std::vector<std::string> to_load;
  ReloadReport report;
  {
    std::lock_guard lock(mu_);
    for (auto fit = files_.begin(); fit != files_.end();) {
      if (!seen.count(fit->first)) {
        report.removed.push_back(fit->first);
        fit = files_.erase(fit);
      } else {
        ++fit;
      }
    }
    for (const auto& [path, s] : seen) {
      auto f = files_.find(path);
      if (force || f == files_.end() || f->second.mtime_ns != s.mtime_ns ||
          f->second.size != s.size)
        to_load.push_back(path);
    }
  }

  std::vector<std::pair<std::string, dsl::LoadResult>> loaded;
  for (const std::string& path : to_load) {
    if (!HasPipelineKind(path)) {
      std::lock_guard lock(mu_);
      auto known = files_.find(path);
      if (known != files_.end() && known->second.file.spec) {
        // Was a pipeline: an edit that lost the kind line (or replaced the
        // file with garbage) is a failed load, and the last good version
        // stays in service until the file is fixed or deleted.
        loaded.emplace_back(path, LoadFailure(path, "no top-level 'kind: Pipeline' line any more; "
                                                    "the last good version stays in service until "
                                                    "the file is fixed or deleted"));
        continue;
      }
      files_.erase(path);  // not (or no longer) a pipeline
      continue;
    }
    loaded.emplace_back(path, LoadIsolated(loader_, path, seen[path].size));
  }

  std::lock_guard lock(mu_);
  for (auto& [path, result] : loaded) {
    FileState& st = files_[path];
    st.mtime_ns = seen[path].mtime_ns;
    st.size = seen[path].size;
    st.file.path = path;
    st.file.loaded_at = std::chrono::system_clock::now();
    st.file.diagnostics = std::move(result.diagnostics);
    if (result.spec) {
      // Another file already owns this name?
      std::string owner;
      for (const auto& [other_path, other] : files_)
        if (other_path != path && other.file.spec && other.file.name == result.spec->name)
          owner = other_path;
      if (!owner.empty()) {
        dsl::Diagnostic d;
        d.loc.file = path;
        d.message = "pipeline name '" + result.spec->name + "' is already defined by " + owner +
                    "; give each pipeline a unique metadata.name";
        st.file.diagnostics.push_back(d);
        st.file.ok = false;
        report.failed.push_back(path);
        continue;
      }
      st.file.ok = true;
      st.file.name = result.spec->name;
      st.file.digest = result.spec->file_digest;
      st.file.spec = std::make_shared<const PipelineSpec>(std::move(*result.spec));
      report.loaded.push_back(path);
    } else {
      st.file.ok = false;  // keeps st.file.spec: the last good version
      report.failed.push_back(path);
    }
  }
  return report;
}

std::vector<PipelineFile> PipelineRegistry::List() const {
  std::lock_guard lock(mu_);
  std::vector<PipelineFile> out;
  for (const auto& [path, st] : files_) out.push_back(st.file);
  return out;
}

SpecPtr PipelineRegistry::Find(const std::string& name) const {
  std::lock_guard lock(mu_);
  for (const auto& [path, st] : files_)
    if (st.file.spec && st.file.name == name) return st.file.spec;
  return nullptr;
}

std::vector<std::string> PipelineRegistry::PipelinesTouchedBy(
    const std::vector<std::string>& paths) const {
  std::lock_guard lock(mu_);
  std::set<std::string> names;
  for (const auto& [path, st] : files_) {
    if (!st.file.spec) continue;
    std::string dir = fs::path(path).parent_path().string();
    for (const std::string& changed : paths) {
      bool hit = PathSuffixMatches(path, changed);
      for (const auto* steps : {&st.file.spec->steps, &st.file.spec->finally_steps})
        for (const StepSpec& step : *steps)
          for (const std::string& code : step.code)
            hit = hit || PathSuffixMatches(fs::path(dir + "/" + code).lexically_normal().string(),
                                           changed);
      if (hit) names.insert(st.file.name);
    }
  }
  return {names.begin(), names.end()};
}

}  // namespace sluice::server
