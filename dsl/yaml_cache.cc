#include "dsl/yaml_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace sluice::dsl {
namespace {

namespace fs = std::filesystem;

// Bumped whenever YamlNode or the encoding changes.
constexpr std::string_view kMagic = "sluice-yaml-tree 1\n";

void PutU32(std::string* out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  bool U32(uint32_t* v) {
    if (end_ - p_ < 4) return false;
    std::memcpy(v, p_, 4);
    p_ += 4;
    return true;
  }
  bool U8(uint8_t* v) {
    if (p_ == end_) return false;
    *v = static_cast<uint8_t>(*p_++);
    return true;
  }
  bool Bytes(uint32_t n, std::string* out) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    out->assign(p_, n);
    p_ += n;
    return true;
  }
  size_t left() const { return static_cast<size_t>(end_ - p_); }

 private:
  const char* p_;
  const char* end_;
};

std::optional<std::string> ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return std::nullopt;
  return bytes;
}

// Keeps the newest kMaxEntries entries (by modification time).
void Trim(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::pair<fs::file_time_type, fs::path>> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".tree") continue;
    entries.emplace_back(e.last_write_time(ec), e.path());
  }
  if (entries.size() <= kMaxEntries) return;
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = kMaxEntries; i < entries.size(); ++i) fs::remove(entries[i].second, ec);
}

}  // namespace

std::string EncodeYamlDocument(const YamlDocument& doc) {
  std::string out(kMagic);
  PutU32(&out, static_cast<uint32_t>(doc.nodes.size()));
  PutU32(&out, doc.root);
  for (const auto& n : doc.nodes) {
    out += static_cast<char>(n.kind);
    out += static_cast<char>(n.quoted ? 1 : 0);
    PutU32(&out, static_cast<uint32_t>(n.pos));
    PutU32(&out, static_cast<uint32_t>(n.line));
    PutU32(&out, static_cast<uint32_t>(n.column));
    PutU32(&out, static_cast<uint32_t>(n.value.size()));
    out += n.value;
    PutU32(&out, static_cast<uint32_t>(n.children.size()));
    for (uint32_t c : n.children) PutU32(&out, c);
  }
  out += kMagic;  // trailer: a truncated entry is never complete
  return out;
}

std::optional<YamlDocument> DecodeYamlDocument(std::string_view bytes) {
  if (bytes.size() < 2 * kMagic.size() || bytes.substr(0, kMagic.size()) != kMagic ||
      bytes.substr(bytes.size() - kMagic.size()) != kMagic)
    return std::nullopt;
  Reader r(bytes.substr(kMagic.size(), bytes.size() - 2 * kMagic.size()));
  YamlDocument doc;
  uint32_t count = 0;
  if (!r.U32(&count) || !r.U32(&doc.root)) return std::nullopt;
  if (count > r.left() / 22) return std::nullopt;  // a node takes at least 22 bytes
  if (doc.root != YamlDocument::kNoRoot && doc.root >= count) return std::nullopt;
  doc.nodes.resize(count);
  for (auto& n : doc.nodes) {
    uint8_t kind = 0, quoted = 0;
    uint32_t pos = 0, line = 0, column = 0, size = 0, children = 0;
    if (!r.U8(&kind) || kind > static_cast<uint8_t>(YamlNode::Kind::kMap) || !r.U8(&quoted) || !r.U32(&pos) ||
        !r.U32(&line) || !r.U32(&column) || !r.U32(&size) || !r.Bytes(size, &n.value) || !r.U32(&children) ||
        children > r.left() / 4)
      return std::nullopt;
    n.kind = static_cast<YamlNode::Kind>(kind);
    n.quoted = quoted != 0;
    n.pos = static_cast<int>(pos);
    n.line = static_cast<int>(line);
    n.column = static_cast<int>(column);
    n.children.resize(children);
    for (auto& c : n.children)
      if (!r.U32(&c) || c >= count) return std::nullopt;
  }
  if (r.left() != 0) return std::nullopt;
  return doc;
}

std::string ParseCacheDir() {
  if (const char* d = std::getenv("SLUICE_PARSE_CACHE"); d && *d)
    return std::string(d) == "off" ? "" : std::string(d);
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "sluice" / "parse").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "sluice" / "parse").string();
  return "";
}

YamlDocument ParseYamlCached(std::string_view text, const std::string& digest_hex) {
  const std::string dir = text.size() >= kMinCachedBytes ? ParseCacheDir() : "";
  if (dir.empty()) return ParseYaml(text);
  if (CheckYamlText(text)) return ParseYaml(text);  // reports the problem
  const fs::path entry = fs::path(dir) / (digest_hex + ".tree");
  if (auto bytes = ReadAll(entry)) {
    if (auto doc = DecodeYamlDocument(*bytes); doc && WithinLimits(*doc)) return std::move(*doc);
  }
  YamlDocument doc = ParseYaml(text);
  if (!doc.problems.empty()) return doc;
  // Best effort: a cache that cannot be written is only slower.
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path tmp = fs::path(dir) / (digest_hex + ".tmp." + std::to_string(getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    const std::string bytes = EncodeYamlDocument(doc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      out.close();
      fs::remove(tmp, ec);
      return doc;
    }
  }
  fs::rename(tmp, entry, ec);
  if (ec) fs::remove(tmp, ec);
  Trim(dir);
  return doc;
}

}  // namespace sluice::dsl
