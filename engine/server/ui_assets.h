#pragma once
// The web UI's static files, embedded into the binary at build time
// (engine/server/embed_assets.cmake turns engine/server/ui/* into a .cc).

#include <cstddef>
#include <string_view>

namespace sluice::server {

struct EmbeddedAsset {
  std::string_view path;          // relative to engine/server/ui, e.g. "app.js"
  std::string_view content_type;  // from the extension
  std::string_view data;
};

// The asset at `path`, or nullptr.
const EmbeddedAsset* FindUiAsset(std::string_view path);

}  // namespace sluice::server
