#pragma once
// Which artifact store a command or a run uses, and a set of opened stores
// for a server whose pipelines name different buckets.
//
// The store is chosen by the first setting that names one, in the order the
// caller gives (for `sluice run`: --artifacts, the pipeline's `artifacts:`;
// for `sluice serve`: --artifacts, the pipeline's, the server config's;
// for resume and rerun the run's recorded store comes after the flag);
// none = the local FileArtifactStore.

#include <initializer_list>
#include <map>
#include <mutex>
#include <string>

#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

// A candidate store: its URL ("" = none named) and which setting names it.
struct ArtifactStoreChoice {
  std::string url;   // "s3://bucket/prefix"; "" = the local store
  std::string from;  // e.g. "--artifacts", "the pipeline's artifacts:"; "" with url ""
};

// The first of `candidates` whose url is not ""; {"", ""} when none is.
ArtifactStoreChoice ChooseArtifactStore(std::initializer_list<ArtifactStoreChoice> candidates);

// Stores opened on first use and kept, by URL, all caching under one state
// directory; for `sluice serve`, whose runs may use different buckets.
// Thread-safe.
class ArtifactStores {
 public:
  // `endpoint`: the --artifacts-endpoint given to every S3 store ("" = the
  // AWS settings'; see OpenArtifactStore).
  ArtifactStores(std::string state_dir, std::string endpoint);

  // The store of `url` ("" = the local one), opened (and its bucket checked)
  // the first time; owned by this set. A failed open is not kept: the next
  // call tries again. Errors: those of OpenArtifactStore.
  Result<ArtifactStore*> Get(const std::string& url);

 private:
  std::string state_dir_;
  std::string endpoint_;
  std::mutex mu_;
  std::map<std::string, ArtifactStorePtr> stores_;
};

}  // namespace sluice
