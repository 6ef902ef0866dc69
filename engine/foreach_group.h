#pragma once
// A step's foreach group and minSuccessRatio (ForEachSpec::group and
// ::min_success_ratio), for steps with or without a foreach.

#include <optional>
#include <string>

#include "engine/spec.h"

namespace sluice {

// ForEachSpec::group of `step`; "" without a foreach.
inline std::string ForeachGroup(const StepSpec& step) { return step.foreach ? step.foreach->group : ""; }

// ForEachSpec::min_success_ratio of `step`; nullopt without a foreach.
inline std::optional<double> MinSuccessRatio(const StepSpec& step) {
  return step.foreach ? step.foreach->min_success_ratio : std::nullopt;
}

}  // namespace sluice
