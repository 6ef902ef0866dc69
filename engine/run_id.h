#pragma once
// Run ids: the grammar shared by everything that accepts one from a user
// (`sluice run/rerun/reproduce/import --run-id`, the server's
// POST /api/v1/pipelines/{name}/runs) and by the Runner, which makes the
// run's directory <store>/runs/<id>; and the one maker of new ids, for the
// CLI, the server and the Runner alike.
//
// A run id is 1 to 128 characters from [A-Za-z0-9._-], starts with a letter
// or a digit, and does not contain "..". So it is one path component that
// cannot climb out of <store>/runs, it needs no escaping in a URL, and it
// fits in a log line.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace sluice {

// The longest run id ValidateRunId accepts.
inline constexpr size_t kMaxRunIdLength = 128;

// Ok when `id` follows the grammar above. Otherwise kInvalidArgument with a
// message that quotes the id (control and non-ASCII bytes escaped as \xNN,
// cut after 40 characters) and states the grammar, e.g.
//   invalid run id '../../etc': a run id is 1-128 characters from A-Z a-z
//   0-9 . _ -, starts with a letter or digit and has no '..'
Status ValidateRunId(std::string_view id);

// A new run's id: "<pipeline>-YYYYMMDD-HHMMSS-<4 hex>", `now` in UTC to the
// second and 16 random bits, e.g. "retrain-20261125-153012-a1b2"; "run"
// stands for an empty pipeline name. Since a pipeline's name is a DNS label,
// the id follows the grammar above. Thread-safe.
std::string NewRunId(std::string_view pipeline, std::chrono::system_clock::time_point now);

}  // namespace sluice
