// `sluice serve --leader-election`: replicas of the real binary sharing a
// PostgreSQL store (the CTest fixture "postgres") elect one leader with the
// store's advisory lock; when the leader is killed with SIGKILL, the standby
// leads within a bound.

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/engine/store_test_records.h"
#include "tests/support/postgres_server.h"
#include "tests/support/subprocess.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Waits (at most `bound`) until `process` has written `text` to stderr.
bool WaitForStderr(testutil::Subprocess& process, const std::string& text,
                   std::chrono::seconds bound = std::chrono::seconds(60)) {
  const auto deadline = Clock::now() + bound;
  while (Clock::now() < deadline) {
    if (process.ErrSoFar().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

constexpr char kLeading[] = "sluice serve: leading: this replica holds the store's leader lock\n";
constexpr char kStandingBy[] = "sluice serve: standing by: another replica holds the store's leader lock\n";

class ServeLeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testutil::PostgresTestUrl(SLUICE_TEST_POSTGRES_STATE);
    if (server_.empty()) GTEST_SKIP() << testutil::NoPostgresReason(SLUICE_TEST_POSTGRES_STATE);
    db_ = std::make_unique<testutil::TestDatabase>(server_);
    ASSERT_EQ(db_->error(), "");
    fs::create_directories(dir_.path() + "/pipelines");
  }

  // A replica in its own directory (its own state files), on a free port.
  std::unique_ptr<testutil::Subprocess> Replica(const std::string& name) {
    const std::string cwd = dir_.path() + "/" + name;
    fs::create_directories(cwd);
    return std::make_unique<testutil::Subprocess>(
        std::vector<std::string>{SLUICE_BIN, "serve", "--pipelines", dir_.path() + "/pipelines", "--store",
                                 db_->url(), "--listen", "127.0.0.1:0", "--leader-election"},
        cwd);
  }

  std::string server_;
  std::unique_ptr<testutil::TestDatabase> db_;
  testing::TempDir dir_;
};

TEST_F(ServeLeaderTest, OneReplicaLeadsAndTheStandbyTakesOverAfterAKillNine) {
  auto a = Replica("a");
  ASSERT_TRUE(WaitForStderr(*a, kLeading)) << a->ErrSoFar();
  auto b = Replica("b");
  ASSERT_TRUE(WaitForStderr(*b, "sluice serve: listening on")) << b->ErrSoFar();
  EXPECT_NE(b->ErrSoFar().find(kStandingBy), std::string::npos) << b->ErrSoFar();
  EXPECT_EQ(b->ErrSoFar().find(kLeading), std::string::npos) << b->ErrSoFar();

  const auto killed = Clock::now();
  ASSERT_EQ(::kill(a->pid(), SIGKILL), 0);
  // The standby asks every 2 s (ServerOptions::leader_retry); the bound
  // allows for a loaded machine.
  ASSERT_TRUE(WaitForStderr(*b, kLeading, std::chrono::seconds(30))) << b->ErrSoFar();
  std::cout << "the standby led "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed).count()
            << " ms after the leader's kill -9\n";
  // The URL's password is never printed.
  const std::string url = db_->url();
  const std::string password = url.substr(url.find(':', url.find("://") + 3) + 1,
                                          url.find('@') - url.find(':', url.find("://") + 3) - 1);
  ASSERT_FALSE(password.empty());
  EXPECT_EQ(b->ErrSoFar().find(password), std::string::npos);
}

TEST_F(ServeLeaderTest, LeaderElectionNeedsAPostgresStore) {
  testutil::Subprocess serve({SLUICE_BIN, "serve", "--pipelines", dir_.path() + "/pipelines", "--store",
                              dir_.path() + "/store", "--listen", "127.0.0.1:0", "--leader-election"},
                             dir_.path());
  testutil::Output out = serve.Wait(std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.err.find("sluice serve: --leader-election needs a postgres:// store (--store, or store: in the "
                         "config)\n"),
            std::string::npos)
      << out.err;
}

TEST_F(ServeLeaderTest, AnUnknownElectionOrAnImpossibleLeaseTimingIsAUsageError) {
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"--leader-election", "etcd"}, "sluice: error: --leader-election must be postgres or kubernetes, not 'etcd'\n"},
      {{"--leader-election", "kubernetes", "--lease-duration", "10s"},
       "sluice: error: --lease-duration must be longer than --renew-deadline\n"},
      {{"--leader-election", "kubernetes", "--renew-deadline", "2s"},
       "sluice: error: --renew-deadline must be longer than 1.2 x --retry-period\n"},
      {{"--leader-election", "kubernetes", "--lease-duration", "15500ms"},
       "sluice: error: --lease-duration must be whole seconds (the Lease stores seconds)\n"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {SLUICE_BIN, "serve", "--pipelines", dir_.path() + "/pipelines", "--store",
                                     db_->url(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    testutil::Output out = testutil::Subprocess(argv, dir_.path()).Wait(std::chrono::seconds(60));
    EXPECT_EQ(out.exit_code, 2) << c.error;
    EXPECT_NE(out.err.find(c.error), std::string::npos) << out.err;
  }
}

}  // namespace
}  // namespace sluice
