#pragma once
// Provenance facts for step snapshots: the git state of a file and tool
// versions. Each runs a program (git, python3) by fork/exec with an argv,
// never through a shell; none of them fails hard: a missing tool or a file
// outside a repository gives empty values.

#include <optional>
#include <string>
#include <vector>

#include "engine/process.h"  // RunProgram, used with these
#include "engine/status.h"

namespace sluice {

// The git state of one file.
struct GitState {
  bool in_repo = false;  // false when git is missing or the file is not in a work tree
  std::string commit;    // HEAD's full hash; "" outside a repo or before the first commit
  bool dirty = false;    // the file differs from HEAD (modified, staged or untracked)
};

// Runs `git -C <dir of file> rev-parse HEAD` and
// `git -C <dir> status --porcelain -- <file>`.
GitState GitStateOf(const std::string& file);

// "3.11.2" from `python3 --version`, or "" when there is no python3 on PATH.
// The result is computed once per process.
std::string PythonVersion();

// sluice's own version ("0.1.0").
std::string SluiceVersion();

// This machine's name (gethostname), or "" when it cannot be read. Runs
// record it so that a second process can tell whether their driver is local.
std::string HostName();

}  // namespace sluice
