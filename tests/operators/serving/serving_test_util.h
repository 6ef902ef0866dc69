#pragma once
// Shared set-up for the serving operator tests: a fresh state directory with
// a real SQLite store, the real sluice-serving binary for the proxy, and the
// stdlib-only fake model server (fake_model_server.py) as the served program.

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/store/sqlite_store.h"
#include "operators/serving/deploy.h"

namespace sluice::serving::testing {

inline std::string MakeTempDir(const std::string& prefix) {
  std::string pattern = std::filesystem::temp_directory_path().string() + "/" + prefix + "XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  char* dir = mkdtemp(buf.data());
  return dir ? std::string(dir) : std::string();
}

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("sluice-serving-test-");
    ASSERT_FALSE(dir_.empty());
    auto store = SqliteStore::Open(dir_ + "/state");
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
    env_.state_dir = dir_ + "/state";
    env_.self_exe = SLUICE_SERVING_BIN;
    env_.store = store_.get();
    env_.stop_grace = std::chrono::seconds(2);
  }

  void TearDown() override {
    for (const auto& service : services_) (void)Undeploy(service, env_);
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A model file for the fake server, e.g. Model("a.json", R"({"answer": 1})").
  std::string Model(const std::string& name, const std::string& json) {
    std::string path = dir_ + "/" + name;
    WriteFile(path, json);
    return path;
  }

  // A deploy config serving `model` with the fake server.
  DeployConfig Config(const std::string& service, const std::string& model,
                      const std::string& version) {
    services_.push_back(service);
    DeployConfig c;
    c.service = service;
    c.model = model;
    c.version = version;
    c.command = {"python3", FAKE_MODEL_SERVER, "--model", "{{model}}", "--port", "{{port}}"};
    c.readiness_timeout = std::chrono::seconds(20);
    c.run.run_id = "run-1";
    c.run.instance = "deploy";
    return c;
  }

  std::string dir_;
  std::unique_ptr<SqliteStore> store_;
  ServingEnv env_;
  std::vector<std::string> services_;
};

}  // namespace sluice::serving::testing
