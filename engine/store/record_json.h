#pragma once
// The JSON shape of the store's records (runs, steps, artifacts), built in
// one place for both shells that print them: the CLI's `-o json|yaml`
// (docs/cli.md) and the HTTP API (docs/api.md). The two views share every
// field but the few that RecordView names.

#include <string>

#include "engine/time_format.h"
#include "engine/spec.h"
#include "engine/store.h"

namespace sluice {

// Which shell a record's JSON is for. Where they differ:
//   kCli: runs and steps carry "duration_ms" (an integer, -1 before the
//         start); artifact bindings leave out "properties".
//   kApi: runs carry no duration; steps carry "duration_seconds" (a number,
//         null before the start) and "has_log"; artifact bindings carry
//         "properties".
// Times are IsoTime strings (engine/time_format.h), or null when unset, in both.
enum class RecordView { kCli, kApi };

// The run: id, pipeline, pipeline_file, pipeline_digest, git_commit,
// git_dirty, params, executor, phase, message, resumed_from, created_at,
// started_at, finished_at, host, pid (and duration_ms in kCli).
Json RunRecordJson(const RunRecord& run, RecordView view);

// The step: instance, step, index, item, phase, attempts, exit_code,
// message, log_path, cache_key, cached_from, started_at, finished_at,
// output_params, metrics, outputs and inputs (bindings, as
// ArtifactBindingJson), plus the view's duration and has_log. A step not
// finished yet is timed up to now.
Json StepRecordJson(const StepRecord& step, RecordView view);

// An artifact: digest, uri, type, size, is_directory, properties.
Json ArtifactRecordJson(const ArtifactRecord& artifact);

// An artifact bound to an input or output: ArtifactRecordJson plus "name"
// (without "properties" in kCli).
Json ArtifactBindingJson(const ArtifactBinding& binding, RecordView view);

// An audit log entry: id, at, who, role, method, route, run_id, pipeline,
// code. The same in both views.
Json AuditEntryJson(const AuditEntry& entry);

}  // namespace sluice
