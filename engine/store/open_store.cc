#include "engine/store/open_store.h"

#include "engine/store/sqlite_store.h"

namespace sluice {

Result<StorePtr> OpenStore(const std::string& state_dir, const StoreOptions& options) {
  auto store = SqliteStore::Open(state_dir, options);
  if (!store) return Error(store.error());
  return StorePtr(std::move(*store));
}

}  // namespace sluice
