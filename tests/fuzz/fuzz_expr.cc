// Fuzz target: the expression and template language (engine/expr.h). Each
// input is tried as a bare expression and as a template, against a scope
// with every root the engine fills in at run time.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/expr.h"

namespace {

const sluice::Json& Scope() {
  static const sluice::Json scope = sluice::Json::parse(R"({
    "params": {"lr": 0.1, "epochs": 3, "name": "resnet", "deploy": true, "big": 1e308,
               "neg": -9223372036854775808, "models": ["a", "b", "c"], "empty": "",
               "nested": {"k": [1, {"x": null}]}},
    "steps": {
      "train": {"outputs": {"params": {"auc": "0.93"}, "artifacts": {"model": "/s/m.pkl"},
                            "metrics": {"accuracy": 0.91}}, "phase": "Succeeded"},
      "fan": {"outputs": {"params": {"acc": ["0.8", "0.9", "0.85"]}}}
    },
    "inputs": {"data": "/s/data.csv"},
    "item": {"model": "logreg", "depth": 4},
    "item_index": 1,
    "run": {"id": "r-1", "name": "nightly", "status": "Failed"}
  })");
  return scope;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace expr = sluice::expr;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto v = expr::Evaluate(text, Scope())) {
    (void)expr::IsTruthy(*v);
    (void)v->dump(-1, ' ', false, sluice::Json::error_handler_t::replace);
  }
  (void)expr::EvaluateCondition(text, Scope());
  (void)expr::Render(text, Scope());
  (void)expr::RenderValue(text, Scope());
  (void)expr::References(text, /*is_template=*/false);
  (void)expr::References(text, /*is_template=*/true);
  return 0;
}
