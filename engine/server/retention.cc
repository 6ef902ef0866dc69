#include "engine/server/retention.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

namespace sluice::server {
namespace {

namespace fs = std::filesystem;

// Size of a file, or the sum of the files under a directory.
int64_t SizeOf(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    auto n = fs::file_size(path, ec);
    return ec ? 0 : static_cast<int64_t>(n);
  }
  int64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) total += static_cast<int64_t>(it->file_size(fec));
  }
  return total;
}

// True when `path` was last written before `cutoff`.
bool OlderThan(const fs::path& path, fs::file_time_type cutoff) {
  std::error_code ec;
  auto t = fs::last_write_time(path, ec);
  return !ec && t < cutoff;
}

}  // namespace

Status DeleteRunAndFiles(Store* store, const std::string& state_dir, const std::string& run_id) {
  SLUICE_RETURN_IF_ERROR(store->DeleteRun(run_id));
  if (run_id.empty() || run_id.find('/') != std::string::npos || run_id == "." || run_id == "..")
    return Status::Ok();  // never a path outside runs/
  fs::path dir = fs::path(state_dir.empty() ? ".sluice" : state_dir) / "runs" / run_id;
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec)
    return Status::FailedPrecondition("run " + run_id + " was deleted from the store, but " +
                                      dir.string() + " could not be removed: " + ec.message() +
                                      "; remove it by hand");
  return Status::Ok();
}

Result<PruneResult> PruneHistory(Store* store, const std::string& state_dir,
                                 const HistoryPolicy& policy) {
  RunFilter filter;
  filter.pipeline = policy.pipeline;
  filter.limit = 0;  // all
  auto runs = store->ListRuns(filter);
  if (!runs) return Error(runs.error().WithContext("pruning runs of " + policy.pipeline));
  PruneResult result;
  int succeeded = 0, failed = 0;
  for (const RunRecord& run : *runs) {  // newest first
    if (!IsTerminal(run.phase) || run.id.rfind(policy.id_prefix, 0) != 0) continue;
    int& seen = run.phase == RunPhase::kSucceeded ? succeeded : failed;
    const int keep = run.phase == RunPhase::kSucceeded ? policy.keep_succeeded : policy.keep_failed;
    if (seen++ < keep) continue;
    Status st = DeleteRunAndFiles(store, state_dir, run.id);
    if (st.ok()) {
      result.deleted.push_back(run.id);
    } else if (st.code() == StatusCode::kNotFound) {
      continue;  // deleted meanwhile (another pruning pass)
    } else if (st.code() == StatusCode::kFailedPrecondition) {
      result.kept.emplace_back(run.id, st.message());
    } else {
      return Error(st.WithContext("pruning runs of " + policy.pipeline));
    }
  }
  return result;
}

std::optional<HistoryPolicy> ScheduleHistoryPolicy(const PipelineSpec& spec) {
  if (!spec.schedule) return std::nullopt;
  HistoryPolicy p;
  p.pipeline = spec.name;
  p.id_prefix = spec.name + "-cron-";
  p.keep_succeeded = p.keep_failed = spec.schedule->history_limit;
  return p;
}

Result<GcResult> CollectGarbage(Store* store, const std::string& state_dir,
                                const GcOptions& options) {
  for (RunPhase phase : {RunPhase::kPending, RunPhase::kRunning}) {
    RunFilter filter;
    filter.phase = phase;
    filter.limit = 4;
    auto active = store->ListRuns(filter);
    if (!active) return Error(active.error());
    if (active->empty()) continue;
    std::string ids;
    for (size_t i = 0; i < active->size() && i < 3; ++i) ids += (i ? ", " : "") + (*active)[i].id;
    if (active->size() > 3) ids += ", ...";
    return Error(Status::FailedPrecondition(
        "not collecting garbage while runs are " + std::string(RunPhaseName(phase)) + " (" + ids +
        "): a run stores its outputs before it records them; retry when they have ended (an "
        "interrupted run continues with `sluice resume RUN`, or delete it with `sluice runs "
        "delete RUN` once it is resumed and finished)"));
  }
  auto digests = store->ArtifactDigests();
  if (!digests) return Error(digests.error());
  std::set<std::string> recorded;
  for (const std::string& d : *digests)
    if (d.rfind("sha256:", 0) == 0) recorded.insert(d.substr(7));

  GcResult result;
  const fs::path cas = fs::path(state_dir.empty() ? ".sluice" : state_dir) / "cas";
  const auto cutoff = fs::file_time_type::clock::now() - options.grace;
  std::error_code ec;
  for (auto shard = fs::directory_iterator(cas / "sha256", ec); !ec && shard != fs::directory_iterator();
       shard.increment(ec)) {
    std::error_code sec;
    if (!shard->is_directory(sec)) continue;
    for (auto entry = fs::directory_iterator(shard->path(), sec);
         !sec && entry != fs::directory_iterator(); entry.increment(sec)) {
      const std::string hex = entry->path().filename().string();
      if (recorded.count(hex) || !OlderThan(entry->path(), cutoff)) {
        ++result.kept;
        continue;
      }
      const int64_t size = SizeOf(entry->path());
      if (!options.dry_run) {
        std::error_code rec;
        fs::remove_all(entry->path(), rec);
        if (rec)
          return Error(Status::FailedPrecondition("cannot remove " + entry->path().string() + ": " +
                                                  rec.message()));
      }
      ++result.removed;
      result.removed_bytes += size;
    }
  }
  for (auto tmp = fs::directory_iterator(cas / "tmp", ec); !ec && tmp != fs::directory_iterator();
       tmp.increment(ec)) {
    if (!OlderThan(tmp->path(), cutoff)) continue;
    if (!options.dry_run) {
      std::error_code rec;
      fs::remove_all(tmp->path(), rec);
    }
    ++result.temp_removed;
  }
  return result;
}

}  // namespace sluice::server
