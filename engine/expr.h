#pragma once
// The template and expression language used in pipeline files.
//
//   Template:    "train --lr {{ params.lr }} --data {{ inputs.data }}"
//   Expression:  steps.eval.outputs.metrics.auc >= params.threshold && params.deploy
//
// Expressions: dotted names (params.x, steps.s.outputs.params.p,
// steps.s.outputs.artifacts.a, steps.s.outputs.metrics.m, steps.s.phase,
// inputs.x, item, item.field, run.status, run.id, run.name, workflow-like
// builtins), literals (numbers, 'single' or "double" quoted strings, true,
// false, null, [lists]), comparison (== != < <= > >=), boolean (&& || !, and
// the words and/or/not), `in`, parentheses, and indexing (a[0], a['k']).
//
// Evaluation is against a scope: a JSON object whose top-level keys are the
// roots (params, steps, item, inputs, run). A name that is absent from the
// scope is an error (never an empty string).
//
// This header is pure: no I/O, no YAML. dsl/ uses References() to lint and
// the engine uses Render()/Evaluate() at run time.

#include <string>
#include <string_view>
#include <vector>

#include "engine/spec.h"
#include "engine/status.h"

namespace sluice::expr {

// How deep an expression may nest: parentheses, lists, calls, indexes, field
// reads of computed values and `not` each add a level (a chain of && or ||
// is one level). Deeper input is a syntax error ("col N: the expression
// nests more than 64 levels deep; simplify it"), never deep recursion. Real
// conditions nest a handful of levels.
inline constexpr size_t kMaxExpressionDepth = 64;

// A dotted name referenced by an expression, e.g. {"steps","train","outputs",
// "params","auc"}. `offset` is the byte offset of the name's first character
// inside the template/expression text (for error columns).
struct Reference {
  std::vector<std::string> path;
  size_t offset = 0;

  std::string ToString() const;  // "steps.train.outputs.params.auc"
};

// Parses `expression` (no surrounding braces) and evaluates it against `scope`.
// Errors: kInvalidArgument for syntax errors (message includes the column,
// 1-based, as "col N: ..."), kNotFound for unknown names ("unknown name
// 'params.lr'"), kInvalidArgument for type errors.
Result<Json> Evaluate(std::string_view expression, const Json& scope);

// Replaces every `{{ expression }}` in `text` by its value. Strings are
// inserted as-is, numbers/bools in their JSON spelling, lists and objects as
// compact JSON. Text without `{{` is returned unchanged. Same errors as
// Evaluate.
Result<std::string> Render(std::string_view text, const Json& scope);

// Like Render, but when `text` is exactly one `{{ expression }}` (surrounding
// whitespace allowed) the expression's JSON value is returned unconverted
// (so `foreach: "{{ params.models }}"` yields a list).
Result<Json> RenderValue(std::string_view text, const Json& scope);

// A `when` condition: the text may be a bare expression or wrapped in
// `{{ }}`; the result is converted with IsTruthy.
Result<bool> EvaluateCondition(std::string_view text, const Json& scope);

// Every dotted name referenced in `text`. `text` is a template when
// `is_template` is true (names are only looked for inside `{{ }}`), otherwise
// a bare expression. Returns kInvalidArgument on a syntax error.
Result<std::vector<Reference>> References(std::string_view text, bool is_template);

// false, null, 0, "", "false" (any case), [] and {} are false; all else true.
bool IsTruthy(const Json& value);

}  // namespace sluice::expr
