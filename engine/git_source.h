#pragma once
// Files from Git repositories, pinned to a commit: what a step's
// `uses: git+<repo-url>@<ref>#<path>` names.
//
// Repositories are fetched into a cache (DefaultGitCacheDir()): one bare
// repository per URL (repos/<sha256 of the URL, 16 hex>.git) and one
// checked-out tree per commit (trees/<commit>), written once and never
// changed, so a tree's path names its content. A ref that is a full commit
// hash already in the cache is used without the network; any other ref
// (a branch, a tag, a short hash) is fetched every time and resolved to the
// commit it names now, which the caller records.
//
// git runs with an argv, never a shell, with GIT_TERMINAL_PROMPT=0 (a
// repository that asks for a password fails instead of waiting) and only
// the transports https, http, ssh, git and file.

#include <string>
#include <string_view>

#include "engine/status.h"

namespace sluice {

// `git+<url>@<ref>#<path>`, split.
struct GitSource {
  std::string url;   // "https://github.com/org/parts.git"
  std::string ref;   // "v1.2", "main", or a commit hash
  std::string path;  // "train/component.yaml", relative to the repository root

  // "git+<url>@<ref>#<path>" again.
  std::string ToString() const;
};

// Parses `uses` ("git+https://host/org/repo.git@v1#components/train.yaml").
// The ref is the text after the last '@' before '#'. Errors
// (kInvalidArgument, saying what the form is): no "git+" prefix, a URL with
// another scheme than https, http, ssh, git or file, no `@ref` (a component
// must be pinned), a ref that is not a Git ref name, no `#path`, or a path
// that is absolute or leaves the repository.
Result<GitSource> ParseGitSource(std::string_view uses);

// A commit's files, checked out in the cache.
struct GitCheckout {
  std::string commit;  // 40 hex digits
  std::string dir;     // the tree: <cache>/trees/<commit>
};

// Fetches `source.ref` of `source.url` into `cache_dir` (unless it is a
// commit already there), resolves it to a commit and checks the commit out
// once. Safe with several processes sharing the cache (a lock per
// repository). Errors: kUnavailable with git's own message when the
// repository or the ref cannot be fetched; kNotFound when git is not
// installed; kInternal when the cache cannot be written.
Result<GitCheckout> FetchGitSource(const GitSource& source, const std::string& cache_dir);

// $SLUICE_CACHE_DIR/git, else $XDG_CACHE_HOME/sluice/git, else
// $HOME/.cache/sluice/git.
std::string DefaultGitCacheDir();

}  // namespace sluice
