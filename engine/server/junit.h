#pragma once
// JUnit XML for `sluice run --junit FILE` and `sluice submit --junit FILE`:
// one <testcase> per step instance, so CI systems show steps natively.

#include <string>

#include "engine/run/runner.h"

namespace sluice::server {

// Renders `summary` as a JUnit XML document (the Jenkins/Surefire schema that
// GitHub Actions reporters and GitLab's artifacts:reports:junit read):
//   <testsuites name="sluice" tests= failures= errors= skipped= time=>
//     <testsuite name="PIPELINE" ...>
//       <testcase classname="PIPELINE" name="INSTANCE" time="SECONDS">
// Failed → <failure>, Error/Cancelled/Omitted → <error>, Skipped/Cached →
// <skipped message="...">. Text is XML-escaped; times have 3 decimals.
// Pure: no I/O.
std::string JunitXml(const RunSummary& summary);

// Writes JunitXml(summary) to `path` (atomically: temp file + rename).
// kFailedPrecondition with the path and errno text on failure.
Status WriteJunitXml(const RunSummary& summary, const std::string& path);

}  // namespace sluice::server
