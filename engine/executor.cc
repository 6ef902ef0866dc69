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

}  // namespace sluice
