// The limits of dsl/limits.h and expr::kMaxExpressionDepth: hostile input
// (found by fuzzing) is a located lint error, never a crash, a hang or an
// unbounded allocation. Big inputs are generated here, not stored.

#include "dsl/limits.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "dsl/dsl.h"
#include "dsl/yaml_tree.h"
#include "engine/expr.h"

namespace sluice::dsl {
namespace {

constexpr const char* kHeader =
    "apiVersion: sluice.dev/v1\n"
    "kind: Pipeline\n"
    "metadata: {name: p}\n";

std::string Lint(const std::string& yaml) {
  return FormatDiagnosticsText(LoadPipelineString(yaml, "p.yaml").diagnostics);
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// A pipeline whose one step has `field: value` (value written as is).
std::string StepWith(const std::string& field, const std::string& value) {
  return std::string(kHeader) + "steps:\n  - name: a\n    command: [echo]\n    " + field + ": " + value + "\n";
}

// -- expressions ---------------------------------------------------------------

TEST(ExpressionLimits, TenThousandParenthesesInWhen) {
  std::string expr = Repeat("(", 10000) + "true" + Repeat(")", 10000);
  EXPECT_EQ(Lint(StepWith("when", "\"{{ " + expr + " }}\"")),
            "p.yaml:7:79: error: invalid expression: the expression nests more than 64 levels deep; simplify it\n");
}

TEST(ExpressionLimits, DeepInputIsAnErrorInEveryEntryPoint) {
  const Json scope = Json::parse(R"({"l": [[1]]})");
  // The error points at the token one level too deep.
  const std::pair<std::string, int> cases[] = {
      {Repeat("(", 100000) + "true" + Repeat(")", 100000), 65},
      {Repeat("not ", 100000) + "true", 253},
      {Repeat("!", 100000) + "true", 64},
      {Repeat("[", 100000) + Repeat("]", 100000), 65},
      {Repeat("len(", 100000) + "l" + Repeat(")", 100000), 257},
  };
  for (const auto& [text, col] : cases) {
    auto refs = expr::References(text, false);
    ASSERT_FALSE(refs.has_value());
    EXPECT_EQ(refs.error().message(),
              "col " + std::to_string(col) + ": the expression nests more than 64 levels deep; simplify it");
    auto v = expr::Evaluate(text, scope);
    ASSERT_FALSE(v.has_value());
    EXPECT_EQ(v.error().message(), refs.error().message());
    EXPECT_FALSE(expr::Render("{{ " + text + " }}", scope).has_value());
    EXPECT_FALSE(expr::EvaluateCondition("{{ " + text + " }}", scope).has_value());
  }
}

TEST(ExpressionLimits, MillionIndexesAreTooDeep) {
  const Json scope = Json::parse(R"({"l": [0]})");
  auto v = expr::Evaluate("l" + Repeat("[0]", 1000000), scope);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().message(), "col 191: the expression nests more than 64 levels deep; simplify it");
}

TEST(ExpressionLimits, LongAndOrChainsAreFlat) {
  const Json scope = Json::parse(R"({"f": false})");
  auto v = expr::Evaluate(Repeat("f || ", 100000) + "true", scope);
  ASSERT_TRUE(v.has_value()) << v.error().message();
  EXPECT_EQ(*v, true);
  v = expr::Evaluate(Repeat("true && ", 100000) + "f", scope);
  ASSERT_TRUE(v.has_value()) << v.error().message();
  EXPECT_EQ(*v, false);
  auto refs = expr::References(Repeat("f or ", 100000) + "f", false);
  ASSERT_TRUE(refs.has_value());
  EXPECT_EQ(refs->size(), 100001u);
  // Exactly at the limit is fine.
  std::string at_limit = Repeat("(", 63) + "true" + Repeat(")", 63);
  EXPECT_TRUE(expr::Evaluate(at_limit, scope).has_value());
}

TEST(ExpressionLimits, HostileWhenChainsHitTheStringLimit) {
  EXPECT_EQ(Lint(StepWith("when", "\"{{ " + Repeat("not ", 100000) + "true }}\"")),
            "p.yaml:7:11: error: a string of 400,010 bytes; a string may be at most 131,072 bytes (128 KiB)\n");
  EXPECT_EQ(Lint(StepWith("when", "\"{{ " + Repeat("true || ", 100000) + "true }}\"")),
            "p.yaml:7:11: error: a string of 800,010 bytes; a string may be at most 131,072 bytes (128 KiB)\n");
  EXPECT_EQ(Lint(StepWith("when", "\"{{ [0]" + Repeat("[0]", 1000000) + " == 0 }}\"")),
            "p.yaml:7:11: error: a string of 3,000,014 bytes; a string may be at most 131,072 bytes (128 KiB)\n");
}

TEST(ExpressionLimits, IntegerConversionsAndIndexesNeverOverflow) {
  const Json scope = Json::parse(R"({"l": [1, 2, 3], "big": 1e308, "s": "1e308"})");
  auto err = [&](const std::string& e) {
    auto v = expr::Evaluate(e, scope);
    EXPECT_FALSE(v.has_value()) << e << " gave " << (v ? v->dump() : "");
    return v ? std::string() : v.error().message();
  };
  EXPECT_EQ(err("int(1e308)"), "col 1: int() cannot convert 1e+308: out of the 64-bit integer range");
  EXPECT_EQ(err("int(big)"), "col 1: int() cannot convert 1e+308: out of the 64-bit integer range");
  EXPECT_EQ(err("int(s)"), "col 1: int() cannot convert \"1e308\": out of the 64-bit integer range");
  EXPECT_EQ(err("int(9223372036854775808.0)"),
            "col 1: int() cannot convert 9.223372036854776e+18: out of the 64-bit integer range");
  EXPECT_EQ(err("int(-1e19)"), "col 1: int() cannot convert -1e+19: out of the 64-bit integer range");
  EXPECT_EQ(err("1e999"), "col 1: number '1e999' is out of range");
  EXPECT_EQ(err("l[18446744073709551615]"), "col 2: index 18446744073709551615 is out of range (the list has 3 items)");
  EXPECT_EQ(err("l[9223372036854775807]"), "col 2: index 9223372036854775807 is out of range (the list has 3 items)");
  EXPECT_EQ(err("l[-9223372036854775808]"),
            "col 2: index -9223372036854775808 is out of range (the list has 3 items)");
  EXPECT_EQ(err("l[-4]"), "col 2: index -4 is out of range (the list has 3 items)");
  EXPECT_EQ(err("l[1e300]"), "col 2: a list index must be an integer, got number");
  EXPECT_EQ(*expr::Evaluate("int(-9223372036854775808.0)", scope), INT64_MIN);
  EXPECT_EQ(*expr::Evaluate("int(9223372036854775807)", scope), INT64_MAX);  // an int stays exact
  EXPECT_EQ(*expr::Evaluate("l[-3]", scope), 1);
}

TEST(ExpressionLimits, InvalidUtf8InValuesNeverThrows) {
  const Json scope = {{"bad", std::string("a\xcb") + "b"}, {"list", Json::array({std::string("\xff")})}};
  auto r = expr::Render("{{ list }} {{ str(list) }} {{ join(list) }}", scope);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(*r, "[\"\xEF\xBF\xBD\"] [\"\xEF\xBF\xBD\"] \xff");
  auto v = expr::Evaluate("list < 1", scope);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().message(), "col 6: cannot order list [\"\xEF\xBF\xBD\"] and int 1");
}

// -- YAML ----------------------------------------------------------------------

TEST(YamlLimits, HundredThousandNestedFlowListsStopAtTheDepthLimit) {
  YamlDocument d = ParseYaml(Repeat("[", 100000) + Repeat("]", 100000));
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_TRUE(d.problems[0].fatal);
  EXPECT_EQ(d.problems[0].line, 1);
  EXPECT_EQ(d.problems[0].column, 65);
  EXPECT_EQ(d.problems[0].message,
            "maps and lists nest more than 64 levels deep (aliases count as the node they repeat); flatten the "
            "structure");
  // Block style nests through indentation and '- ' the same way.
  d = ParseYaml(Repeat("- ", 100000) + "x\n");
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].column, 129);
  // Exactly at the limit is fine.
  d = ParseYaml(Repeat("[", 64) + Repeat("]", 64));
  EXPECT_TRUE(d.problems.empty());
  // A second document is parsed only to report it, within the same limit.
  d = ParseYaml("a: 1\n---\n" + Repeat("[", 100000) + Repeat("]", 100000));
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].line, 3);
  EXPECT_EQ(d.problems[0].column, 65);
  EXPECT_EQ(d.problems[0].message,
            "maps and lists nest more than 64 levels deep (aliases count as the node they repeat); flatten the "
            "structure");
}

TEST(YamlLimits, AliasInsideItsOwnNode) {
  EXPECT_EQ(Lint(StepWith("kubernetes", "&s {x: *s}")),
            "p.yaml:7:24: error: alias '*s' refers to a map or list that contains it, which would repeat "
            "forever; an alias may only repeat a node that has ended\n");
  EXPECT_EQ(Lint(std::string(kHeader) + "steps: &s\n  - name: a\n    command: [echo]\n    foreach: [*s]\n"),
            "p.yaml:7:15: error: alias '*s' refers to a map or list that contains it, which would repeat "
            "forever; an alias may only repeat a node that has ended\n");
}

// The classic "billion laughs": ten aliases of ten aliases of ... of a
// string, 10^9 strings from a few hundred bytes.
std::string Laughs(const std::string& prefix) {
  std::string out = prefix + "[&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]";
  for (int level = 1; level <= 9; ++level) {
    out += ", &l" + std::to_string(level) + " [";
    for (int k = 0; k < 10; ++k) out += (k ? ", *l" : "*l") + std::to_string(level - 1);
    out += "]";
  }
  return out + "]";
}

TEST(YamlLimits, BillionLaughsHitTheNodeBudget) {
  const std::string expected_tail =
      ": error: the document holds more than 1,000,000 YAML nodes once its aliases are expanded (each *alias "
      "counts the whole node it repeats)\n";
  std::string foreach = StepWith("foreach", Laughs(""));
  EXPECT_LT(foreach.size(), 700u);
  // Crossed at an alias of the sixth level (10^6 nodes).
  EXPECT_EQ(Lint(foreach), "p.yaml:7:335" + expected_tail);
  EXPECT_EQ(Lint(std::string(kHeader) + "params:\n  p: {type: list, default: " + Laughs("") +
                 "}\nsteps:\n  - name: a\n    command: [echo]\n"),
            "p.yaml:5:349" + expected_tail);
  EXPECT_EQ(Lint(std::string(kHeader) + "steps:\n  - name: a\n    type: tfjob\n    tfjob: {x: " + Laughs("") +
                 "}\n"),
            "p.yaml:7:337" + expected_tail);
}

TEST(YamlLimits, ManyPlainNodesHitTheNodeBudget) {
  YamlDocument d = ParseYaml("[" + Repeat("a,", 1000000) + "a]");
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].column, 2000000);
  EXPECT_EQ(d.problems[0].message,
            "the document holds more than 1,000,000 YAML nodes once its aliases are expanded (each *alias counts "
            "the whole node it repeats)");
}

TEST(YamlLimits, LongString) {
  EXPECT_EQ(Lint(StepWith("env", "{X: " + std::string(kMaxScalarBytes + 1, 'x') + "}")),
            "p.yaml:7:14: error: a string of 131,073 bytes; a string may be at most 131,072 bytes (128 KiB)\n");
  EXPECT_EQ(Lint(StepWith("env", "{X: " + std::string(kMaxScalarBytes, 'x') + "}")), "");
}

TEST(YamlLimits, InvalidUtf8IsALocatedError) {
  EXPECT_EQ(Lint(StepWith("foreach", "[a\xcb b]")),
            "p.yaml:7:16: error: invalid UTF-8 (byte 0xcb); a pipeline file must be UTF-8 text\n");
  // Overlong forms and UTF-16 surrogates are not UTF-8 either.
  EXPECT_EQ(Lint(StepWith("env", "{X: \"\xc0\xaf\"}")),
            "p.yaml:7:15: error: invalid UTF-8 (byte 0xc0); a pipeline file must be UTF-8 text\n");
  EXPECT_EQ(Lint(StepWith("env", "{X: \"\xed\xa0\x80\"}")),
            "p.yaml:7:15: error: invalid UTF-8 (byte 0xed); a pipeline file must be UTF-8 text\n");
  // Well-formed UTF-8 of every length is fine.
  EXPECT_EQ(Lint(StepWith("env", "{X: \"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}")), "");
  LoadResult r = LoadPipelineString(std::string(kHeader) + "steps:\n  - name: a\n    command: [echo]\n    \xff: 1\n",
                                    "p.yaml");
  EXPECT_EQ(FormatDiagnosticsJson(r.diagnostics),
            "[\n  {\n    \"column\": 5,\n    \"file\": \"p.yaml\",\n    \"line\": 7,\n    \"message\": \"invalid "
            "UTF-8 (byte 0xff); a pipeline file must be UTF-8 text\",\n    \"severity\": \"error\"\n  }\n]\n");
}

TEST(YamlLimits, JsonDiagnosticsOfAFileNamedInAnyBytes) {
  LoadResult r = LoadPipelineString("steps: [", "\xff.yaml");
  std::string json = FormatDiagnosticsJson(r.diagnostics);
  EXPECT_NE(json.find("\"file\": \"\xEF\xBF\xBD.yaml\""), std::string::npos) << json;
}

TEST(YamlLimits, HugeFileIsRejectedBeforeReadingIt) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("sluice-huge-" + std::to_string(getpid()) + ".yaml")).string();
  { std::ofstream(path) << "a: 1\n"; }
  std::filesystem::resize_file(path, 400u << 20);  // sparse: no 400 MB on disk
  LoadResult r = LoadPipelineFile(path);
  std::filesystem::remove(path);
  EXPECT_EQ(FormatDiagnosticsText(r.diagnostics),
            path + ":1:1: error: the file is larger than 16,777,216 bytes (16 MiB), the most a pipeline file may "
                   "hold\n");
  EXPECT_EQ(LoadPipelineString(std::string(kMaxFileBytes + 1, ' '), "p.yaml").diagnostics[0].message,
            "the file is larger than 16,777,216 bytes (16 MiB), the most a pipeline file may hold");
}

// -- counts --------------------------------------------------------------------

TEST(CountLimits, HundredThousandEnvVars) {
  std::string env;
  for (int i = 0; i < 100000; ++i) env += "      V" + std::to_string(i) + ": x\n";
  EXPECT_EQ(Lint(std::string(kHeader) + "steps:\n  - name: a\n    command: [echo]\n    env:\n" + env),
            "p.yaml:1008:7: error: more than 1000 environment variables in one 'env'; pass the rest in a file\n");
  EXPECT_EQ(Lint(std::string(kHeader) + "defaults:\n  env:\n" + env + "steps:\n  - name: a\n    command: [echo]\n"),
            "p.yaml:1006:7: error: more than 1000 environment variables in one 'env'; pass the rest in a file\n");
}

TEST(CountLimits, StepEnvOverridesDefaultsAtTheLimit) {
  std::string env;
  for (size_t i = 0; i < kMaxEnvEntries; ++i) env += "      V" + std::to_string(i) + ": x\n";
  std::string defaults_env;
  for (size_t i = 0; i < kMaxEnvEntries; ++i) defaults_env += "    V" + std::to_string(i) + ": d\n";
  LoadResult r = LoadPipelineString(std::string(kHeader) + "defaults:\n  env:\n" + defaults_env +
                                        "steps:\n  - name: a\n    command: [echo]\n    env:\n" + env,
                                    "p.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnosticsText(r.diagnostics);
  ASSERT_EQ(r.spec->steps[0].env.size(), kMaxEnvEntries);
  EXPECT_EQ(r.spec->steps[0].env[999].name, "V999");
  EXPECT_EQ(r.spec->steps[0].env[999].value.text, "x");
}

TEST(CountLimits, Steps) {
  std::string steps;
  for (size_t i = 0; i <= kMaxSteps; ++i) steps += "  - {name: s" + std::to_string(i) + ", command: [echo]}\n";
  EXPECT_EQ(Lint(std::string(kHeader) + "steps:\n" + steps),
            "p.yaml:20005:5: error: more than 20,000 steps (steps and finally together); split the pipeline into "
            "several\n");
}

TEST(CountLimits, Params) {
  std::string params;
  for (size_t i = 0; i <= kMaxParams; ++i) params += "  p" + std::to_string(i) + ": 1\n";
  EXPECT_EQ(Lint(std::string(kHeader) + "params:\n" + params + "steps:\n  - name: a\n    command: [echo]\n"),
            "p.yaml:1005:3: error: more than 1,000 params; pass structured settings as one list parameter\n");
}

TEST(CountLimits, DefaultsCopiedIntoEveryStep) {
  std::string tolerations;
  for (int i = 0; i < 1000; ++i) tolerations += "{key: k" + std::to_string(i) + "},";
  std::string steps;
  for (int i = 0; i < 1000; ++i) steps += "  - {name: s" + std::to_string(i) + ", command: [echo]}\n";
  EXPECT_EQ(Lint(std::string(kHeader) + "defaults:\n  resources: {tolerations: [" + tolerations + "]}\nsteps:\n" +
                 steps),
            "p.yaml:5:3: error: 'defaults' (3,005 YAML nodes) is copied into each of the 1,000 steps, more than "
            "1,000,000 nodes in all; set the large parts in the steps that need them\n");
}

TEST(CountLimits, ErrorsStopAfterAThousand) {
  // Each unknown step costs a "did you mean" search over all 20,000 names.
  std::string steps;
  for (size_t i = 0; i < kMaxSteps; ++i)
    steps += "  - {name: s" + std::to_string(i) + ", command: [echo], depends: [x" + std::to_string(i) + "]}\n";
  LoadResult r = LoadPipelineString(std::string(kHeader) + "steps:\n" + steps, "p.yaml");
  ASSERT_EQ(r.diagnostics.size(), kMaxErrors + 1);
  EXPECT_EQ(r.diagnostics[0].ToString(), "p.yaml:5:43: error: unknown step 'x0' in depends; did you mean 's0'?");
  EXPECT_EQ(r.diagnostics.back().ToString(), "p.yaml: error: more than 1,000 errors; fix these and lint again");
}

TEST(CountLimits, ForeachRange) {
  EXPECT_EQ(Lint(StepWith("foreach", "{range: {start: -9007199254740993, end: 9223372036854775807}}")),
            "p.yaml:7:30: error: 'range.start' must be between -9007199254740992 and 9007199254740992 (2^53), got "
            "-9007199254740993\n"
            "p.yaml:7:54: error: 'range.end' must be between -9007199254740992 and 9007199254740992 (2^53), got "
            "9223372036854775807\n");
  EXPECT_EQ(Lint(StepWith("foreach", "{range: 1000001}")),
            "p.yaml:7:22: error: 'foreach' range has 1,000,001 values; a range may have at most 1,000,000\n");
  EXPECT_EQ(Lint(StepWith("foreach", "{range: {start: 9007199254740992, end: -9007199254740992, step: -3}}")),
            "p.yaml:7:22: error: 'foreach' range has 6,004,799,503,160,662 values; a range may have at most "
            "1,000,000\n");
  EXPECT_EQ(Lint(StepWith("foreach", "{range: {end: 1000000}}")), "");
}

}  // namespace
}  // namespace sluice::dsl
