#include "engine/store/provenance.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "engine/process.h"
#include "engine/text.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace sluice {

namespace {

// A program's one-line answer: without its line end and trailing blanks, and
// without leading blanks.
std::string_view Answer(std::string_view s) { return TrimLeft(TrimRight(s, "\n\r "), " "); }

}  // namespace

GitState GitStateOf(const std::string& file) {
  GitState state;
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(file, ec);
  if (ec) return state;
  std::string dir = abs.parent_path().string();
  auto top = RunProgram({"git", "-C", dir, "rev-parse", "--is-inside-work-tree"});
  if (!top || top->exit_code != 0 || Answer(top->out) != "true") return state;
  state.in_repo = true;
  auto head = RunProgram({"git", "-C", dir, "rev-parse", "--verify", "--quiet", "HEAD"});
  if (head && head->exit_code == 0) state.commit = Answer(head->out);
  auto status = RunProgram({"git", "-C", dir, "status", "--porcelain", "--", abs.string()});
  // Untracked, modified or staged: anything listed differs from HEAD.
  state.dirty = !status || status->exit_code != 0 || !Answer(status->out).empty();
  if (state.commit.empty()) state.dirty = true;
  return state;
}

std::string PythonVersion() {
  static std::once_flag once;
  static std::string version;
  std::call_once(once, [] {
    auto out = RunProgram({"python3", "-c",
                           "import sys; print('.'.join(map(str, sys.version_info[:3])))"});
    if (out && out->exit_code == 0) version = Answer(out->out);
  });
  return version;
}

std::string SluiceVersion() { return SLUICE_VERSION; }

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

}  // namespace sluice
