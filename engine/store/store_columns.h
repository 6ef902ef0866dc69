#pragma once
// How the SQL stores (SqliteStore, PgStore) write records into columns and
// read them back: times as milliseconds since the epoch, JSON as text, and a
// step's artifact bindings as JSON text written and scanned without a
// parser on the cache-hit path. Pure: no I/O.

#include <cstdint>
#include <functional>
#include <utility>
#include <string>
#include <vector>

#include "engine/spec.h"
#include "engine/store.h"

namespace sluice {

// A time as milliseconds since the epoch, and back (the stores keep
// millisecond precision).
int64_t ToMillis(TimePoint t);
TimePoint FromMillis(int64_t ms);

// `j` as compact JSON text (engine/json_text.h).
std::string DumpJson(const Json& j);

// The text of an execution's snapshot column: the record's pre-written
// text when it has one (ExecutionRecord::snapshot_text), else its Json.
std::string SnapshotColumn(const ExecutionRecord& e);

// JSON column text parsed; `fallback` for NULL (nullptr) or text that is not
// JSON.
Json ParseJson(const char* text, const Json& fallback);
inline Json ParseJson(const unsigned char* text, const Json& fallback) {
  return ParseJson(reinterpret_cast<const char*>(text), fallback);
}

// "dataset", "model", "metrics"; anything else is kOther.
ArtifactType ParseArtifactType(const std::string& s);

// Artifact bindings as JSON text: [{digest, is_directory, name, properties,
// size, type, uri}, ...] in the key order a dumped Json object has, written
// directly (a step row per cache hit). BindingsFromText reads it back.
std::string BindingsJsonText(const std::vector<ArtifactBinding>& bindings);

// The bindings BindingsJsonText wrote (or any JSON array of such objects);
// empty for NULL (nullptr) or text that is not an array.
std::vector<ArtifactBinding> BindingsFromText(const char* text);
inline std::vector<ArtifactBinding> BindingsFromText(const unsigned char* text) {
  return BindingsFromText(reinterpret_cast<const char*>(text));
}

// Store::DeleteRun's refusals, worded alike by every store. `phase`, `pid`
// and `host` are the run's as recorded; `reusers` are ids of runs whose
// cached steps reuse its outputs, `services` the services it deployed or
// produced what they serve now (the first 3 of each are named).
Status DeleteRunNotFound(const std::string& run_id);
Status DeleteRunNotEnded(const std::string& run_id, const std::string& phase, const std::string& pid,
                         const std::string& host);
Status DeleteRunReused(const std::string& run_id, const std::vector<std::string>& reusers);
Status DeleteRunServing(const std::string& run_id, const std::vector<std::string>& services);

// Replaces each light snapshot in `executions` (snapshot_base != 0) by the
// full one: its base's keys, then its own on top. `read_base(id)` reads
// execution `id`'s stored snapshot and snapshot_base (an empty object and 0
// when it is gone); a chain of light snapshots is followed up to 8 links.
// Errors: the first of read_base's.
Status ResolveLightSnapshots(std::vector<ExecutionRecord>* executions,
                             const std::function<Result<std::pair<Json, int64_t>>(int64_t id)>& read_base);

}  // namespace sluice
