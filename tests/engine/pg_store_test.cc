// What only PgStore does, on a real PostgreSQL server (the CTest fixture
// "postgres"): its migrations, its connection handling, the password mask,
// and PgLeaderLock's election between sessions and processes. The Store
// contract both backends keep is tests/engine/store_test.cc.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "engine/store/open_store.h"
#include "engine/store/pg_leader_lock.h"
#include "engine/store/pg_store.h"
#include "tests/engine/store_test_records.h"
#include "tests/support/free_port.h"
#include "tests/support/postgres_server.h"

namespace sluice {
namespace {

using namespace sluice::testing;  // NOLINT: the records every test writes

// A database of the test's own on the fixture's server.
class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testutil::PostgresTestUrl(SLUICE_TEST_POSTGRES_STATE);
    if (server_.empty()) GTEST_SKIP() << testutil::NoPostgresReason(SLUICE_TEST_POSTGRES_STATE);
    db_ = std::make_unique<testutil::TestDatabase>(server_);
    ASSERT_EQ(db_->error(), "");
    url_ = db_->url();
  }

  std::unique_ptr<PgStore> OpenOrDie(StoreOptions options = {}) {
    auto store = PgStore::Open(url_, options);
    EXPECT_TRUE(store.has_value()) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }

  std::string server_;
  std::unique_ptr<testutil::TestDatabase> db_;
  std::string url_;
};

TEST_F(PgStoreTest, MigratesAnEmptyDatabaseOnceAndKeepsItsRecords) {
  {
    auto store = OpenOrDie();
    ASSERT_TRUE(store);
    EXPECT_EQ(store->SchemaVersion().value(), PgStore::kSchemaVersion);
    ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  }
  auto store = OpenOrDie();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->GetRun("r1")->pipeline, "retrain");
  EXPECT_EQ(testutil::PgQuery(url_, "SELECT count(*) FROM sluice_schema"), std::vector<std::string>{"1"});
  EXPECT_EQ(testutil::PgQuery(url_, "SELECT version FROM sluice_schema"),
            std::vector<std::string>{std::to_string(PgStore::kSchemaVersion)});
}

TEST_F(PgStoreTest, ReplicasOpeningANewDatabaseTogetherMigrateItOnce) {
  std::vector<std::thread> replicas;
  std::atomic<int> opened{0};
  for (int i = 0; i < 4; ++i) {
    replicas.emplace_back([&] {
      auto store = PgStore::Open(url_);
      EXPECT_TRUE(store.has_value()) << store.error().ToString();
      if (store) ++opened;
    });
  }
  for (auto& r : replicas) r.join();
  EXPECT_EQ(opened.load(), 4);
  EXPECT_EQ(testutil::PgQuery(url_, "SELECT count(*) FROM sluice_schema"), std::vector<std::string>{"1"});
}

TEST_F(PgStoreTest, RefusesAStoreFromANewerSluice) {
  { OpenOrDie(); }
  testutil::PgQuery(url_, "UPDATE sluice_schema SET version = 99");
  auto store = PgStore::Open(url_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().ToString(),
            "FAILED_PRECONDITION: opening store " + MaskStoreUrl(url_) +
                ": the store's schema version is 99 but this sluice knows up to " +
                std::to_string(PgStore::kSchemaVersion) + "; use a newer sluice, or another --store");
}

TEST_F(PgStoreTest, RefusesADatabaseThatIsNotAStore) {
  testutil::PgQuery(url_, "CREATE TABLE invoices (id INTEGER)");
  auto store = PgStore::Open(url_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().ToString(),
            "FAILED_PRECONDITION: opening store " + MaskStoreUrl(url_) +
                ": the database holds tables that are not a sluice store; point --store at an empty database");
  EXPECT_EQ(testutil::PgQuery(url_, "SELECT to_regclass('sluice_schema') IS NULL"), std::vector<std::string>{"t"});
}

TEST_F(PgStoreTest, MissingStoreIsNotFoundWhenNotCreating) {
  StoreOptions existing;
  existing.create_if_missing = false;
  auto store = OpenStore(url_, existing);
  ASSERT_FALSE(store.has_value());
  const std::string shown = MaskStoreUrl(url_);
  EXPECT_EQ(store.error().ToString(), "NOT_FOUND: opening store " + shown + ": no sluice store in " + shown +
                                          " (run a pipeline with --store " + shown + " first)");
  EXPECT_EQ(testutil::PgQuery(url_, "SELECT to_regclass('sluice_schema') IS NULL"), std::vector<std::string>{"t"});
}

TEST_F(PgStoreTest, AStoreWhoseSessionWasTerminatedReconnects) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->CreateRun(MakeRun("r1")).ok());
  // An administrator (or a server restart) ends every session of the store.
  testutil::PgQuery(server_, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                                 db_->name() + "' AND application_name = 'sluice'");
  auto run = store->GetRun("r1");
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(run->id, "r1");
  EXPECT_TRUE(store->CreateRun(MakeRun("r2")).ok());
}

TEST(PgStoreUrlTest, MaskStoreUrlHidesEveryPassword) {
  EXPECT_EQ(MaskStoreUrl("postgres://sluice:s3cret@db.internal:5432/sluice"),
            "postgres://sluice:***@db.internal:5432/sluice");
  EXPECT_EQ(MaskStoreUrl("postgresql://sluice:p%40ss@db/sluice?sslmode=verify-full&password=other"),
            "postgresql://sluice:***@db/sluice?sslmode=verify-full&password=***");
  EXPECT_EQ(MaskStoreUrl("postgres://sluice@db/sluice"), "postgres://sluice@db/sluice");
  EXPECT_EQ(MaskStoreUrl("postgres://db/sluice?password=x"), "postgres://db/sluice?password=***");
  EXPECT_EQ(MaskStoreUrl("/home/ana/.sluice"), "/home/ana/.sluice");
  EXPECT_EQ(MaskStoreSecrets("auth failed for p@ss and p%40ss", "postgres://u:p%40ss@db/x"),
            "auth failed for *** and ***");
  EXPECT_TRUE(IsPostgresUrl("postgresql://db/x"));
  EXPECT_FALSE(IsPostgresUrl("postgres.db"));
}

TEST(PgStoreUrlTest, AnUnreachableServerIsUnavailableWithoutThePassword) {
  const int port = testutil::FreePort();  // nothing listens there
  const std::string url = "postgres://sluice:hunter2-pw@127.0.0.1:" + std::to_string(port) + "/sluice";
  auto store = OpenStore(url);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kUnavailable);
  const std::string prefix = "cannot connect to the store postgres://sluice:***@127.0.0.1:" +
                             std::to_string(port) + "/sluice: ";
  EXPECT_EQ(store.error().message().substr(0, prefix.size()), prefix);
  EXPECT_EQ(store.error().message().find("hunter2-pw"), std::string::npos);
}

TEST_F(PgStoreTest, AWrongPasswordIsUnavailableWithoutThePassword) {
  const std::string wrong = testutil::WithDatabase(server_, db_->name());
  const size_t at = wrong.find('@');
  const size_t colon = wrong.find(':', wrong.find("://") + 3);
  ASSERT_NE(at, std::string::npos);
  const std::string url = wrong.substr(0, colon + 1) + "not-the-password-42" + wrong.substr(at);
  auto store = OpenStore(url);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store.error().message().find("not-the-password-42"), std::string::npos) << store.error().message();
  EXPECT_NE(store.error().message().find("password authentication failed for user \"sluice\""), std::string::npos)
      << store.error().message();
}

// ---------------------------------------------------------------------------
// Leader election

TEST_F(PgStoreTest, ExactlyOneSessionHoldsTheLeaderLock) {
  auto a = PgLeaderLock::Connect(url_, 42);
  auto b = PgLeaderLock::Connect(url_, 42);
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  ASSERT_TRUE(b.has_value()) << b.error().ToString();
  EXPECT_EQ((*a)->TryAcquire().value(), true);
  EXPECT_EQ((*b)->TryAcquire().value(), false);
  // Asking again confirms the leader and does not stack the lock.
  EXPECT_EQ((*a)->TryAcquire().value(), true);
  EXPECT_EQ((*b)->TryAcquire().value(), false);
  ASSERT_TRUE((*a)->Release().ok());
  EXPECT_FALSE((*a)->held());
  EXPECT_EQ((*b)->TryAcquire().value(), true);
  EXPECT_EQ((*a)->TryAcquire().value(), false);
  // Another key is another election.
  auto c = PgLeaderLock::Connect(url_, 43);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ((*c)->TryAcquire().value(), true);
}

// A leader process killed with SIGKILL: its session ends with it, and the
// standby, asking every 100 ms as a replica would, takes the lock within a
// bound (generous: this machine is loaded).
TEST_F(PgStoreTest, AStandbyTakesTheLeaderLockAfterTheLeaderIsKilled) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto lock = PgLeaderLock::Connect(url_, 7);
    char held = (lock && lock.value()->TryAcquire().value_or(false)) ? 'y' : 'n';
    if (::write(fds[1], &held, 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(fds[1]);
  char held = 0;
  ASSERT_EQ(::read(fds[0], &held, 1), 1);
  ::close(fds[0]);
  ASSERT_EQ(held, 'y');

  auto standby = PgLeaderLock::Connect(url_, 7);
  ASSERT_TRUE(standby.has_value()) << standby.error().ToString();
  EXPECT_EQ((*standby)->TryAcquire().value(), false);

  const auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  bool leads = false;
  while (!leads && std::chrono::steady_clock::now() - killed < std::chrono::seconds(30)) {
    auto got = (*standby)->TryAcquire();
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    leads = *got;
    if (!leads) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the retry period
  }
  EXPECT_TRUE(leads) << "the standby did not take the lock within 30 s of the leader's kill -9";
  std::cout << "standby took the lock "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed).count()
            << " ms after the leader's kill -9\n";
}

}  // namespace
}  // namespace sluice
