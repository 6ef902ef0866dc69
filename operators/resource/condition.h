#pragma once
// The successCondition / failureCondition of a `type: resource` step: the
// language of Argo's resource template, which is Kubernetes' label selector
// syntax over JSON paths of the object instead of label keys.
//
//   status.succeeded > 0                      the value at the path, an integer, is > 0
//   status.phase == Failed                    equal ("=" and "==" are the same)
//   status.phase != Running                   not equal, or the path does not exist
//   status.phase in (Succeeded, Completed)    one of
//   status.phase notin (Failed, Error)        none of, or the path does not exist
//   status.completionTime                     the path exists
//   !status.active                            the path does not exist
//
// Requirements are separated by commas. A successCondition holds when ALL of
// its requirements do; a failureCondition holds when ANY of its requirements
// does (Argo's rules: its executor fails the step on the first failure
// requirement that matches, and succeeds once every success requirement has
// matched). A path is dot-separated keys; a number indexes an array
// (status.conditions.0.type) and `#` is an array's length
// (status.workers.#). A value compares as text: a number as written in
// JSON, a boolean as true/false, an object or array as its JSON. `>` and
// `<` need an integer on both sides; anything else does not match.
//
// Pure functions: no I/O.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/status.h"

namespace sluice::operators::resource {

// One requirement of a condition.
struct Requirement {
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists, kGreater, kLess };
  std::string path;  // "status.succeeded"
  Op op = Op::kExists;
  std::vector<std::string> values;  // one for ==, !=, >, <; the set for in/notin; none else

  // As written back in a condition: "status.succeeded > 0".
  std::string ToString() const;
};

// The parsed condition: its requirements in the order written. Empty for an
// empty (or all-blank) text.
using Condition = std::vector<Requirement>;

// Parses `text`. Errors (kInvalidArgument): a message that names the
// 1-based column in `text` and what was expected there, e.g.
// "column 17: expected a value after '>'", "column 20: '>' needs an integer,
// got 'x'".
Result<Condition> ParseCondition(const std::string& text);

// True when `req` holds on `object`.
bool Matches(const Requirement& req, const nlohmann::json& object);

// True when every requirement holds (a success condition); true for an empty
// condition.
bool MatchesAll(const Condition& condition, const nlohmann::json& object);

// The first requirement that holds (a failure condition); nullptr when none
// does or the condition is empty.
const Requirement* FirstMatch(const Condition& condition, const nlohmann::json& object);

}  // namespace sluice::operators::resource
