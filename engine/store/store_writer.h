#pragma once
// StoreWriter: applies StoreBatches to a Store on a thread of its own, in
// the order they were submitted, so that the thread which submits them
// (the Runner's) goes on planning while SQLite writes. A pass of 10,000
// cache hits spends about a third of its time in the store's transaction.
//
//   StoreWriter writer(store);
//   writer.Submit(std::move(batch));  // returns at once
//   ...
//   Status s = writer.Wait();         // every batch submitted so far is written
//
// Each batch is still one Store::Write (one transaction), so a kill -9
// loses at most what a synchronous writer would not yet have written, and
// leaves the store consistent. Thread-safety: Submit and Wait are called
// from one thread; the Store must allow Write on the writer's thread while
// that thread reads (Store::ConcurrentWrites).

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/status.h"
#include "engine/store.h"

namespace sluice {

class StoreWriter {
 public:
  // `store` is not owned and must outlive the writer.
  explicit StoreWriter(Store* store);
  // Waits for the queued batches, then stops the thread.
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Queues `batch` for writing (the thread starts with the first batch).
  // After a write failed, further batches are still written; the first
  // error is kept for Wait().
  void Submit(StoreBatch batch);

  // Blocks until every submitted batch is written. Returns the first error
  // of any write since the writer was made, or OK.
  Status Wait();

 private:
  void Loop();

  Store* store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StoreBatch> queue_;  // guarded by mu_
  bool writing_ = false;          // a batch is being written (guarded by mu_)
  bool stop_ = false;             // guarded by mu_
  Status first_error_;            // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice
