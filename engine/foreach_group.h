#pragma once
// The foreach settings of a step that a ForEachSpec does not hold: the
// group a step's items belong to (a sub-pipeline run with `foreach`) and
// `minSuccessRatio`. dsl/ writes them into StepSpec::config under the
// reserved key kForeachConfigKey; the plan and the runner read them here.

#include <optional>
#include <string>

#include "engine/spec.h"

namespace sluice {

// The reserved config key: {"group": "eval", "minSuccessRatio": 0.5}, each
// present only when set. No operator section uses this name.
inline constexpr char kForeachConfigKey[] = "sluice.dev/foreach";

// The name of the step that ran the sub-pipeline `step` came from with
// `foreach` ("eval" for "eval/score"); "" when `step` is not in such a
// group. Item i of a group member is named "<group>[i]/<rest>" and waits
// only for item i of the members it needs.
inline std::string ForeachGroup(const StepSpec& step) {
  if (!step.config.is_object()) return "";
  auto it = step.config.find(kForeachConfigKey);
  if (it == step.config.end() || !it->is_object()) return "";
  auto g = it->find("group");
  return g != it->end() && g->is_string() ? g->get<std::string>() : "";
}

// The fraction of a foreach step's items that must succeed for the step to
// succeed (0 < r <= 1), failed items then being tolerated; nullopt when not
// set (any failed item fails the step).
inline std::optional<double> MinSuccessRatio(const StepSpec& step) {
  if (!step.foreach || !step.config.is_object()) return std::nullopt;
  auto it = step.config.find(kForeachConfigKey);
  if (it == step.config.end() || !it->is_object()) return std::nullopt;
  auto r = it->find("minSuccessRatio");
  if (r == it->end() || !r->is_number()) return std::nullopt;
  return r->get<double>();
}

}  // namespace sluice
