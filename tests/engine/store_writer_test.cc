#include "engine/store/store_writer.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/engine/fake_store.h"

namespace sluice {
namespace {

// A FakeStore whose Write waits at a gate the test opens, and fails for
// batches whose first step is named in `fail`.
class GatedStore : public testing::FakeStore {
 public:
  std::string fail;

  Status Write(const StoreBatch& batch) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return open_; });
    }
    if (!batch.steps.empty() && batch.steps.front().instance == fail)
      return Status::Internal("disk full writing " + fail);
    return FakeStore::Write(batch);
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Blocks until `n` writes have started.
  void WaitEntered(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int entered_ = 0;
};

StoreBatch Steps(const std::vector<std::string>& instances) {
  StoreBatch batch;
  for (const auto& i : instances) {
    StepRecord s;
    s.run_id = "r1";
    s.instance = i;
    s.phase = NodePhase::kCached;
    s.attempts = 1;
    batch.steps.push_back(s);
  }
  return batch;
}

TEST(StoreWriterTest, SubmitReturnsWhileAWriteRunsAndBatchesAreWrittenInOrder) {
  GatedStore store;
  StoreWriter writer(&store);
  writer.Submit(Steps({"a", "b"}));
  store.WaitEntered(1);  // the first batch is being written, held at the gate
  writer.Submit(Steps({"c"}));
  writer.Submit(Steps({"d"}));
  EXPECT_TRUE(store.put_log.empty());
  store.Open();
  EXPECT_TRUE(writer.Wait().ok());
  EXPECT_EQ(store.put_log, (std::vector<std::string>{"a=Cached#1", "b=Cached#1", "c=Cached#1", "d=Cached#1"}));
}

TEST(StoreWriterTest, WaitGivesTheFirstErrorAndLaterBatchesAreStillWritten) {
  GatedStore store;
  store.fail = "b";
  store.Open();
  StoreWriter writer(&store);
  writer.Submit(Steps({"a"}));
  writer.Submit(Steps({"b"}));
  writer.Submit(Steps({"c"}));
  Status s = writer.Wait();
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_EQ(s.message(), "disk full writing b");
  EXPECT_EQ(store.put_log, (std::vector<std::string>{"a=Cached#1", "c=Cached#1"}));
  EXPECT_EQ(writer.Wait().message(), "disk full writing b");  // kept
}

TEST(StoreWriterTest, DestroyingTheWriterWritesWhatIsQueued) {
  GatedStore store;
  {
    StoreWriter writer(&store);
    writer.Submit(Steps({"a"}));
    writer.Submit(Steps({"b"}));
    store.WaitEntered(1);
    store.Open();
  }
  EXPECT_EQ(store.put_log, (std::vector<std::string>{"a=Cached#1", "b=Cached#1"}));
}

TEST(StoreWriterTest, NothingSubmittedIsNothingToWaitFor) {
  GatedStore store;  // closed: a write would block
  StoreWriter writer(&store);
  writer.Submit(StoreBatch{});
  EXPECT_TRUE(writer.Wait().ok());
  EXPECT_TRUE(store.put_log.empty());
}

}  // namespace
}  // namespace sluice
