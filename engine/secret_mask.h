#pragma once
// Masking of secret values in text: step logs ("***", as CI systems do) and
// the messages and snapshots the store records ("<redacted>").
//
// Pure: no I/O. The run loop decides which values are secret (docs/dsl.md,
// "Secrets"); this file only replaces them.

#include <string>
#include <string_view>
#include <vector>

#include "engine/spec.h"

namespace sluice {

// What a recorded value that held or derived from a secret reads as.
inline constexpr std::string_view kRedacted = "<redacted>";
// What a secret value reads as in a step's log.
inline constexpr std::string_view kLogMask = "***";

// Returns `text` with every occurrence of each value in `values` replaced by
// `replacement`. Where two values overlap at one position the longer one is
// replaced. Empty values are ignored.
std::string MaskValues(std::string_view text, const std::vector<std::string>& values,
                       std::string_view replacement);

// A streaming MaskValues for output read in chunks (a pipe): a value split
// across two chunks is still replaced. Write() returns the text that is safe
// to write now; bytes that may be the start of a value are held back until
// the next Write() or Finish(). Not thread-safe.
class StreamMasker {
 public:
  // Copies `values` (empty ones are dropped) and `replacement`.
  StreamMasker(std::vector<std::string> values, std::string replacement);

  // Feeds the next chunk; returns the masked text that can be written.
  std::string Write(std::string_view chunk);
  // The end of the stream: returns the held-back bytes, masked.
  std::string Finish();

 private:
  std::string Scan(bool final);

  std::vector<std::string> values_;  // longest first
  std::string replacement_;
  std::string pending_;
};

// `params` (an object of bound values) with the value of every parameter that
// `spec` declares `secret: true` replaced by "<redacted>": what a run record,
// a queued run and an API response hold.
Json RedactSecretParams(const PipelineSpec& spec, Json params);

}  // namespace sluice
