// Test support: the S3-compatible server (SeaweedFS) that the CTest fixture
// "s3" starts (tests/s3/CMakeLists.txt). It writes its endpoint and generated
// credentials to <state>/env as KEY=VALUE lines:
//   SLUICE_TEST_S3_ENDPOINT, SLUICE_TEST_S3_ACCESS_KEY, SLUICE_TEST_S3_SECRET_KEY

#pragma once

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>

#include "engine/store/s3_artifact_store.h"

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

// Options for the fixture's server (`env`, from S3ServerEnv): its endpoint
// and credentials, the bucket every test shares ("sluice-test": each bucket
// costs the server volumes) and a prefix of the test's own,
// "<stem>-<8 random hex>".
inline S3Options TestBucketOptions(const std::map<std::string, std::string>& env, const std::string& stem) {
  S3Options o;
  o.endpoint = env.at("SLUICE_TEST_S3_ENDPOINT");
  o.access_key = env.at("SLUICE_TEST_S3_ACCESS_KEY");
  o.secret_key = env.at("SLUICE_TEST_S3_SECRET_KEY");
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  o.bucket = "sluice-test";
  o.prefix = stem + "-" + suffix;
  return o;
}

}  // namespace sluice::testutil
