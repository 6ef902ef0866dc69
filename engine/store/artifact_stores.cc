#include "engine/store/artifact_stores.h"

#include "engine/store/s3_artifact_store.h"

namespace sluice {

ArtifactStoreChoice ChooseArtifactStore(std::initializer_list<ArtifactStoreChoice> candidates) {
  for (const ArtifactStoreChoice& c : candidates)
    if (!c.url.empty()) return c;
  return {};
}

ArtifactStores::ArtifactStores(std::string state_dir, std::string endpoint)
    : state_dir_(std::move(state_dir)), endpoint_(std::move(endpoint)) {}

Result<ArtifactStore*> ArtifactStores::Get(const std::string& url) {
  // Held while opening: a second run of the same bucket waits for the first
  // open rather than checking the bucket twice.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stores_.find(url);
  if (it != stores_.end()) return it->second.get();
  auto opened = OpenArtifactStore(url, endpoint_, state_dir_);
  if (!opened) return Error(opened.error());
  return stores_.emplace(url, std::move(*opened)).first->second.get();
}

}  // namespace sluice
