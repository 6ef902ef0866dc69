#include "engine/executor.h"

namespace sluice {

const char* TaskOutcomeName(TaskOutcome outcome) {
  switch (outcome) {
    case TaskOutcome::kSucceeded: return "Succeeded";
    case TaskOutcome::kFailed: return "Failed";
    case TaskOutcome::kError: return "Error";
    case TaskOutcome::kTimedOut: return "TimedOut";
    case TaskOutcome::kCancelled: return "Cancelled";
  }
  return "Error";
}

Status ExecutorRegistry::Register(const std::string& name, ExecutorPtr executor) {
  if (executors_.count(name)) return Status::AlreadyExists("executor '" + name + "' is already registered");
  executors_[name] = std::move(executor);
  return Status::Ok();
}

Executor* ExecutorRegistry::Find(const std::string& name) const {
  auto it = executors_.find(name);
  return it == executors_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ExecutorRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : executors_) out.push_back(name);
  return out;
}

}  // namespace sluice
