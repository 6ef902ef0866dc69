#pragma once
// The syntax of an S3 location, s3://bucket/prefix: shared by the pipeline
// file's `artifacts:` key (checked at lint) and the S3 artifact store.

#include <string>

#include "engine/status.h"

namespace sluice {

// A bucket and a key prefix within it.
struct S3Location {
  std::string bucket;
  std::string prefix;  // without leading or trailing '/'; "" = none
};

// Parses "s3://bucket/prefix": the bucket 3 to 63 lower-case letters,
// digits, '-' and '.'; the prefix empty or '/'-separated parts of letters,
// digits and ".-_" (a trailing '/' is dropped). Errors: kInvalidArgument
// saying what is wrong with `url`.
Result<S3Location> ParseS3Location(const std::string& url);

}  // namespace sluice
