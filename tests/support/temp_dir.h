// Test support: a fresh directory under the system's temporary directory,
// removed with everything in it when the object goes.

#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace sluice::testutil {

class TempDir {
 public:
  // `prefix` names the directory (<tmp>/<prefix>-XXXXXX), so a test's
  // leftovers are recognisable.
  explicit TempDir(const std::string& prefix = "sluice-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sluice::testutil
