#include "engine/store/open_store.h"

#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include "engine/secret_mask.h"
#include "engine/store/pg_store.h"
#include "engine/store/sqlite_store.h"

namespace sluice {

namespace {

// Where each password in `url` is: [begin, end) byte ranges of the userinfo
// password and of every password= query value.
std::vector<std::pair<size_t, size_t>> PasswordRanges(const std::string& url) {
  std::vector<std::pair<size_t, size_t>> out;
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return out;
  const size_t start = scheme + 3;
  const size_t query = url.find('?', start);
  size_t authority_end = url.find('/', start);
  if (authority_end == std::string::npos || (query != std::string::npos && query < authority_end))
    authority_end = query == std::string::npos ? url.size() : query;
  const size_t at = url.rfind('@', authority_end == 0 ? 0 : authority_end - 1);
  if (at != std::string::npos && at >= start) {
    const size_t colon = url.find(':', start);
    if (colon != std::string::npos && colon < at) out.emplace_back(colon + 1, at);
  }
  if (query == std::string::npos) return out;
  for (size_t pos = query + 1; pos < url.size();) {
    size_t amp = url.find('&', pos);
    if (amp == std::string::npos) amp = url.size();
    if (url.compare(pos, 9, "password=") == 0) out.emplace_back(pos + 9, amp);
    pos = amp + 1;
  }
  return out;
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

bool IsPostgresUrl(const std::string& location) {
  return location.rfind("postgres://", 0) == 0 || location.rfind("postgresql://", 0) == 0;
}

std::string MaskStoreUrl(const std::string& location) {
  if (!IsPostgresUrl(location)) return location;
  std::string out = location;
  auto ranges = PasswordRanges(location);
  for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
    if (it->second > it->first) out.replace(it->first, it->second - it->first, "***");
  }
  return out;
}

std::string MaskStoreSecrets(const std::string& text, const std::string& location) {
  std::vector<std::string> secrets;
  for (auto [begin, end] : PasswordRanges(location)) {
    if (end <= begin) continue;
    secrets.push_back(location.substr(begin, end - begin));
    secrets.push_back(PercentDecode(secrets.back()));
  }
  return MaskValues(text, secrets, kLogMask);
}

Result<StorePtr> OpenStore(const std::string& location, const StoreOptions& options) {
  if (IsPostgresUrl(location)) {
    auto store = PgStore::Open(location, options);
    if (!store) return Error(store.error());
    return StorePtr(std::move(*store));
  }
  auto store = SqliteStore::Open(location, options);
  if (!store) return Error(store.error());
  return StorePtr(std::move(*store));
}

}  // namespace sluice
