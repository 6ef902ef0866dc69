#include "engine/run/launcher_files.h"

#include <cctype>
#include <filesystem>

namespace sluice {
namespace {

namespace fs = std::filesystem;

}  // namespace

Result<ArtifactRecord> PackCode(ArtifactStore* store, const std::string& dir, const std::string& skip,
                                const std::string& staging, const CodeLimits& limits) {
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) return Error(Status::FailedPrecondition("cannot create " + staging + ": " + ec.message()));
  const fs::path root(dir), skip_path = fs::path(skip).lexically_normal();
  int64_t files = 0, bytes = 0;
  Status failed;
  auto too_much = [&](const std::string& what) {
    return Status::FailedPrecondition("the pipeline directory " + dir + " holds more than " + what +
                                      ", the most sluice ships to pods as the steps' code; move data out of it "
                                      "(pass it as an artifact or a param)");
  };
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name == ".git" || name == ".sluice" || p.lexically_normal() == skip_path) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    const fs::path dest = fs::path(staging) / fs::relative(p, root, ec);
    if (it->is_symlink(ec)) {
      fs::copy_symlink(p, dest, ec);
    } else if (it->is_directory(ec)) {
      fs::create_directories(dest, ec);
    } else if (it->is_regular_file(ec)) {
      if (++files > limits.max_files) failed = too_much(std::to_string(limits.max_files) + " files");
      bytes += static_cast<int64_t>(it->file_size(ec));
      if (bytes > limits.max_bytes) failed = too_much(std::to_string(limits.max_bytes >> 20) + " MiB");
      if (!failed.ok()) break;
      fs::copy_file(p, dest, ec);
    }
    if (ec) {
      failed = Status::FailedPrecondition("cannot copy " + p.string() + " for the steps' code: " + ec.message());
      break;
    }
  }
  if (failed.ok() && ec) failed = Status::FailedPrecondition("cannot read " + dir + ": " + ec.message());
  Result<ArtifactRecord> rec = failed.ok() ? store->Put(staging, ArtifactType::kOther) : Error(failed);
  fs::remove_all(staging, ec);
  return rec;
}

std::vector<std::string> StorePathDigests(const std::string& text, const std::string& store_root) {
  std::vector<std::string> out;
  const std::string prefix = store_root + "/cas/sha256/";
  for (size_t pos = text.find(prefix); pos != std::string::npos; pos = text.find(prefix, pos + 1)) {
    size_t h = pos + prefix.size() + 3;  // "<2 hex>/"
    if (h + 64 > text.size()) break;
    std::string hex = text.substr(h, 64);
    bool ok = text[h - 1] == '/';
    for (char c : hex) ok = ok && std::isxdigit(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c));
    if (ok) out.push_back("sha256:" + hex);
  }
  return out;
}

}  // namespace sluice
