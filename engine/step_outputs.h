#pragma once
// Reading a finished step's declared outputs from its working directory,
// shared by the runner (steps that ran on this machine or on a shared
// volume) and sluice-launcher (steps in a pod), so both fail a step with the
// same words. A step's mistake is kFailedPrecondition with the message the
// run records.

#include <string>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice {

// "step '<instance>' declared output artifact '<name>' at <path>, but the
// file does not exist after the step succeeded".
std::string MissingArtifactMessage(const std::string& instance, const std::string& name, const std::string& path);

// The trimmed text of output parameter `name` at `path` (relative to
// `workdir`). Errors: kFailedPrecondition when the file is missing or a
// directory.
Result<std::string> ReadOutputParam(const std::string& instance, const std::string& workdir, const std::string& name,
                                    const std::string& path);

// The metrics file `file` (relative to `workdir`): a JSON object of numbers.
// Errors: kFailedPrecondition when it is missing, not JSON, not an object,
// or holds a value that is not a number (each message names the file).
Result<Json> ReadMetricsFile(const std::string& instance, const std::string& workdir, const std::string& file);

}  // namespace sluice
