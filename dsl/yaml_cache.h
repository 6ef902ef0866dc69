#pragma once
// A cache of parsed pipeline files, keyed by the SHA-256 of their bytes
// (as ccache keys a compile): re-running an unchanged 10,000-step pipeline
// then skips yaml-cpp's scanner, which alone costs several times a ninja
// no-op (docs/performance.md). Internal to dsl/.
//
// Only files of at least kMinCachedBytes are cached (a small file parses
// faster than it loads), and only documents without problems. Entries live
// in $SLUICE_PARSE_CACHE, else $XDG_CACHE_HOME/sluice/parse, else
// ~/.cache/sluice/parse; SLUICE_PARSE_CACHE=off turns the cache off. A
// damaged, truncated or foreign entry, or one outside the limits of
// dsl/limits.h (WithinLimits), is a miss, never an error: the text is parsed
// again and the entry rewritten. Text over the size limit or not UTF-8 is
// never looked up. Entries are written to a temporary
// file and renamed, so concurrent sluice processes never read half of one;
// the directory keeps the newest kMaxEntries.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "dsl/yaml_tree.h"

namespace sluice::dsl {

inline constexpr size_t kMinCachedBytes = 64 * 1024;
inline constexpr size_t kMaxEntries = 16;

// ParseYaml(text), through the cache when `text` is large enough.
// `digest_hex` is the hex SHA-256 of `text`.
YamlDocument ParseYamlCached(std::string_view text, const std::string& digest_hex);

// The cache directory in use, or "" when the cache is off or no directory
// can be named (no HOME).
std::string ParseCacheDir();

// The entry format, exposed for tests: bytes <-> document. DecodeYamlDocument
// returns nullopt for anything that is not a complete, consistent entry.
std::string EncodeYamlDocument(const YamlDocument& doc);
std::optional<YamlDocument> DecodeYamlDocument(std::string_view bytes);

}  // namespace sluice::dsl
