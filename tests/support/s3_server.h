// Test support: the S3-compatible server (SeaweedFS) that the CTest fixture
// "s3" starts (tests/s3/CMakeLists.txt). It writes its endpoint and generated
// credentials to <state>/env as KEY=VALUE lines:
//   SLUICE_TEST_S3_ENDPOINT, SLUICE_TEST_S3_ACCESS_KEY, SLUICE_TEST_S3_SECRET_KEY

#pragma once

#include <fstream>
#include <map>
#include <string>

namespace sluice::testutil {

// The KEY=VALUE lines of <state>/env; empty when the server was not started.
inline std::map<std::string, std::string> S3ServerEnv(const std::string& state) {
  std::map<std::string, std::string> env;
  std::ifstream in(state + "/env");
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

}  // namespace sluice::testutil
