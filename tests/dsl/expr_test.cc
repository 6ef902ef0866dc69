// The expression and template language of engine/expr.h.

#include "engine/expr.h"

#include <gtest/gtest.h>

namespace sluice::expr {
namespace {

const Json kScope = Json::parse(R"({
  "params": {"lr": 0.1, "epochs": 3, "name": "resnet", "deploy": true, "models": ["a", "b", "c"]},
  "steps": {
    "train-model": {"outputs": {"params": {"auc": "0.93"}, "artifacts": {"model": "/s/m.pkl"},
                                "metrics": {"accuracy": 0.91}}, "phase": "Succeeded"},
    "fan": {"outputs": {"params": {"acc": ["0.8", "0.9", "0.85"]}}},
    "8load": {"outputs": {"artifacts": {"state": "/s/state.pkl"}}}
  },
  "item": {"model": "logreg", "depth": 4},
  "item_index": 1,
  "run": {"id": "r-1", "status": "Failed"}
})");

Json Eval(const std::string& e) {
  auto r = Evaluate(e, kScope);
  EXPECT_TRUE(r.has_value()) << e << ": " << (r ? "" : r.error().ToString());
  return r ? *r : Json();
}

TEST(Evaluate, NamesAndLiterals) {
  EXPECT_EQ(Eval("params.lr"), 0.1);
  EXPECT_EQ(Eval("params.name"), "resnet");
  EXPECT_EQ(Eval("item.model"), "logreg");
  EXPECT_EQ(Eval("item['depth']"), 4);
  EXPECT_EQ(Eval("params.models[1]"), "b");
  EXPECT_EQ(Eval("params.models[-1]"), "c");
  EXPECT_EQ(Eval("steps.train-model.outputs.artifacts.model"), "/s/m.pkl");
  EXPECT_EQ(Eval("'single'"), "single");
  EXPECT_EQ(Eval("\"double\""), "double");
  EXPECT_EQ(Eval("[1, 'x', true, null]"), Json::parse(R"([1, "x", true, null])"));
  EXPECT_EQ(Eval("-1.5"), -1.5);
}

// A step name is a DNS label and may start with a digit; after '.' it is
// still a name, while a number elsewhere stays a number.
TEST(Evaluate, AStepNameMayStartWithADigit) {
  EXPECT_EQ(Eval("steps.8load.outputs.artifacts.state"), "/s/state.pkl");
  EXPECT_EQ(Eval("steps['8load'].outputs.artifacts.state"), "/s/state.pkl");
  EXPECT_EQ(Eval("8 == 8.0"), true);
  EXPECT_EQ(Eval("params.models[0]"), "a");
}

TEST(Evaluate, ComparisonsCoerceNumericText) {
  // Output parameters are text read from files: "0.93" compares as a number.
  EXPECT_EQ(Eval("steps.train-model.outputs.params.auc > 0.9"), true);
  EXPECT_EQ(Eval("steps.train-model.outputs.params.auc == 0.93"), true);
  EXPECT_EQ(Eval("steps.train-model.outputs.metrics.accuracy >= params.lr"), true);
  EXPECT_EQ(Eval("params.epochs != 3"), false);
  EXPECT_EQ(Eval("params.epochs <= 3"), true);
  EXPECT_EQ(Eval("params.epochs < 3"), false);
  EXPECT_EQ(Eval("'abc' < 'abd'"), true);
  EXPECT_EQ(Eval("params.deploy == 'true'"), true);
  EXPECT_EQ(Eval("steps.train-model.phase == 'Succeeded'"), true);
}

TEST(Evaluate, BooleanOperatorsAndWords) {
  EXPECT_EQ(Eval("params.deploy && params.epochs > 2"), true);
  EXPECT_EQ(Eval("params.deploy and not (params.epochs > 2)"), false);
  EXPECT_EQ(Eval("!params.deploy || params.lr < 1"), true);
  EXPECT_EQ(Eval("false or 'x'"), true);
  // Short-circuit: the unknown name on the right is never looked up.
  EXPECT_EQ(Eval("false && params.nope"), false);
}

TEST(Evaluate, In) {
  EXPECT_EQ(Eval("'b' in params.models"), true);
  EXPECT_EQ(Eval("'z' not in params.models"), true);
  EXPECT_EQ(Eval("'res' in params.name"), true);
  EXPECT_EQ(Eval("'model' in item"), true);
}

TEST(Evaluate, Functions) {
  EXPECT_EQ(Eval("len(params.models)"), 3);
  EXPECT_EQ(Eval("max(steps.fan.outputs.params.acc)"), 0.9);
  EXPECT_EQ(Eval("min(3, 1, 2)"), 1);
  EXPECT_EQ(Eval("int('42')"), 42);
  EXPECT_EQ(Eval("float('0.5')"), 0.5);
  EXPECT_EQ(Eval("str(3)"), "3");
  EXPECT_EQ(Eval("join(params.models, '-')"), "a-b-c");
  EXPECT_EQ(Eval("upper(params.name)"), "RESNET");
}

TEST(Evaluate, UnknownNameIsNotFound) {
  auto r = Evaluate("params.lrr", kScope);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.error().message(), "unknown name 'params.lrr' (params has: deploy, epochs, lr, models, name)");
  auto root = Evaluate("inputs.data", kScope);
  ASSERT_FALSE(root.has_value());
  EXPECT_EQ(root.error().message(), "unknown name 'inputs.data'");
}

TEST(Evaluate, SyntaxErrorsCarryColumn) {
  auto r = Evaluate("params.lr >> 1", kScope);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "col 12: expected a value or a name, got '>'");
  EXPECT_EQ(Evaluate("(params.lr", kScope).error().message(), "col 11: expected ')', got end of expression");
  EXPECT_EQ(Evaluate("params.lr = 1", kScope).error().message(), "col 11: unexpected '='; use '==' to compare");
  EXPECT_EQ(Evaluate("'open", kScope).error().message(), "col 1: unterminated string; close it with '");
  EXPECT_EQ(Evaluate("", kScope).error().message(), "col 1: empty expression");
  EXPECT_EQ(Evaluate("1 < 2 < 3", kScope).error().message(),
            "col 7: comparisons cannot be chained; combine them with '&&'");
  EXPECT_EQ(Evaluate("size(params.models)", kScope).error().message(),
            "col 1: unknown function 'size'; functions are: len, int, float, str, join, min, max, lower, upper");
}

TEST(Evaluate, TypeErrors) {
  auto r = Evaluate("params.models > 1", kScope);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "col 15: cannot order list [\"a\",\"b\",\"c\"] and int 1");
  EXPECT_EQ(Evaluate("params.models[7]", kScope).error().message(),
            "col 14: index 7 is out of range (the list has 3 items)");
}

TEST(Render, ReplacesEachExpression) {
  EXPECT_EQ(*Render("--lr {{ params.lr }} --epochs {{params.epochs}}", kScope), "--lr 0.1 --epochs 3");
  EXPECT_EQ(*Render("{{ params.models }}", kScope), R"(["a","b","c"])");
  EXPECT_EQ(*Render("{{ item }}", kScope), R"({"depth":4,"model":"logreg"})");
  EXPECT_EQ(*Render("no templates", kScope), "no templates");
  EXPECT_EQ(*Render("{{ params.deploy }}-{{ item_index }}", kScope), "true-1");
  EXPECT_EQ(*Render("{{ '}}' }}", kScope), "}}");
  auto bad = Render("x {{ params.lr", kScope);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message(), "col 3: '{{' is not closed by '}}'");
}

TEST(RenderValue, SingleExpressionKeepsItsType) {
  EXPECT_EQ(*RenderValue("{{ params.models }}", kScope), Json::parse(R"(["a","b","c"])"));
  EXPECT_EQ(*RenderValue("  {{ params.epochs }} ", kScope), 3);
  EXPECT_EQ(*RenderValue("n={{ params.epochs }}", kScope), "n=3");
  EXPECT_EQ(*RenderValue("plain", kScope), "plain");
}

TEST(EvaluateCondition, BareOrWrapped) {
  EXPECT_TRUE(*EvaluateCondition("params.epochs > 2", kScope));
  EXPECT_TRUE(*EvaluateCondition("{{ params.epochs > 2 }}", kScope));
  EXPECT_FALSE(*EvaluateCondition("{{ run.status == 'Succeeded' }}", kScope));
  auto two = EvaluateCondition("{{ params.deploy }} && {{ params.deploy }}", kScope);
  ASSERT_FALSE(two.has_value());
  EXPECT_EQ(two.error().message(),
            "col 24: a condition must be one expression; combine the parts inside a single {{ }} with && or ||");
}

TEST(References, TemplateOffsetsPointAtNames) {
  auto refs = References("python {{ params.lr }} --m {{ steps.train.outputs.artifacts.model[0] }}", true);
  ASSERT_TRUE(refs.has_value());
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].ToString(), "params.lr");
  EXPECT_EQ((*refs)[0].offset, 10u);
  EXPECT_EQ((*refs)[1].ToString(), "steps.train.outputs.artifacts.model");
  EXPECT_EQ((*refs)[1].offset, 30u);
  EXPECT_TRUE(References("no templates {here}", true)->empty());
}

TEST(References, BareExpressionAndFunctions) {
  auto refs = References("len(item.list) > params.n and 'x' in run.name", false);
  ASSERT_TRUE(refs.has_value());
  ASSERT_EQ(refs->size(), 3u);
  EXPECT_EQ((*refs)[0].ToString(), "item.list");
  EXPECT_EQ((*refs)[1].ToString(), "params.n");
  EXPECT_EQ((*refs)[2].ToString(), "run.name");
  EXPECT_EQ(References("a ==", false).error().message(), "col 5: expected a value or a name, got end of expression");
}

TEST(IsTruthy, Rules) {
  for (const char* f : {"false", "null", "0", "0.0", "\"\"", "\"false\"", "\"FALSE\"", "[]", "{}"})
    EXPECT_FALSE(IsTruthy(Json::parse(f))) << f;
  for (const char* t : {"true", "1", "-2", "\"x\"", "\"0\"", "[0]", "{\"a\":1}"})
    EXPECT_TRUE(IsTruthy(Json::parse(t))) << t;
}

}  // namespace
}  // namespace sluice::expr
