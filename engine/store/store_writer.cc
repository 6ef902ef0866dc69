#include "engine/store/store_writer.h"

#include <utility>

namespace sluice {

StoreWriter::StoreWriter(Store* store) : store_(store) {}

StoreWriter::~StoreWriter() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StoreWriter::Submit(StoreBatch batch) {
  if (batch.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(batch));
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  cv_.notify_all();
}

Status StoreWriter::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return queue_.empty() && !writing_; });
  return first_error_;
}

void StoreWriter::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // The destructor's stop waits for the queue to empty: nothing submitted
    // is dropped.
    cv_.wait(lock, [this] { return !queue_.empty() || stop_; });
    if (queue_.empty()) return;
    StoreBatch batch = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    Status s = store_->Write(batch);
    batch = StoreBatch{};  // freed here, off the submitting thread
    lock.lock();
    writing_ = false;
    if (!s.ok() && first_error_.ok()) first_error_ = s;
    cv_.notify_all();
  }
}

}  // namespace sluice
