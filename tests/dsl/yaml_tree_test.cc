#include "dsl/yaml_tree.h"

#include <gtest/gtest.h>

namespace sluice::dsl {
namespace {

TEST(ParseYaml, LocationsAreOneBasedAndQuotedScalarsAreStrings) {
  YamlDocument d = ParseYaml("a: 1\nb:\n  - 'x'\n  - \"2\"\n  - 3\nc:\n");
  ASSERT_TRUE(d.problems.empty());
  const YamlNode& root = d.at(d.root);
  ASSERT_TRUE(root.IsMap());
  ASSERT_EQ(root.children.size(), 6u);
  const YamlNode& a = d.at(root.children[1]);
  EXPECT_EQ(a.value, "1");
  EXPECT_EQ(a.line, 1);
  EXPECT_EQ(a.column, 4);
  EXPECT_EQ(ResolveScalar(a), PlainType::kInt);
  const YamlNode& seq = d.at(root.children[3]);
  ASSERT_TRUE(seq.IsSequence());
  const YamlNode& x = d.at(seq.children[0]);
  EXPECT_TRUE(x.quoted);
  EXPECT_EQ(x.line, 3);
  EXPECT_EQ(x.column, 5);  // the opening quote
  EXPECT_EQ(ResolveScalar(d.at(seq.children[1])), PlainType::kString);  // "2"
  EXPECT_EQ(ResolveScalar(d.at(seq.children[2])), PlainType::kInt);
  const YamlNode& c = d.at(root.children[5]);
  EXPECT_TRUE(c.IsNull());
  EXPECT_EQ(c.line, 6);  // an empty value points at its key
  EXPECT_EQ(c.column, 1);
}

TEST(ParseYaml, DuplicateKeysAreProblems) {
  YamlDocument d = ParseYaml("a: 1\nb: 2\na: 3\n");
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].line, 3);
  EXPECT_EQ(d.problems[0].column, 1);
  EXPECT_EQ(d.problems[0].message, "duplicate key 'a' (first defined at line 1); remove one of them");
  EXPECT_FALSE(d.problems[0].fatal);
}

TEST(ParseYaml, SyntaxErrorIsFatalWithItsPosition) {
  YamlDocument d = ParseYaml("a: [1, 2\nb: 3\n");
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_TRUE(d.problems[0].fatal);
  EXPECT_EQ(d.problems[0].message.rfind("YAML syntax error: ", 0), 0u);
}

TEST(ParseYaml, AliasesShareTheAnchoredNode) {
  YamlDocument d = ParseYaml("a: &x [1, 2]\nb: *x\n");
  const YamlNode& root = d.at(d.root);
  EXPECT_EQ(root.children[1], root.children[3]);
}

TEST(ParseYaml, EmptyInputHasNoRoot) {
  EXPECT_EQ(ParseYaml("").root, YamlDocument::kNoRoot);
  EXPECT_EQ(ParseYaml("# only a comment\n").root, YamlDocument::kNoRoot);
}

TEST(ResolveScalar, CoreSchema) {
  auto plain = [](const char* s) {
    YamlNode n;
    n.kind = YamlNode::Kind::kScalar;
    n.value = s;
    return ResolveScalar(n);
  };
  EXPECT_EQ(plain("true"), PlainType::kBool);
  EXPECT_EQ(plain("False"), PlainType::kBool);
  EXPECT_EQ(plain("yes"), PlainType::kString);  // YAML 1.2: not a bool
  EXPECT_EQ(plain("~"), PlainType::kNull);
  EXPECT_EQ(plain("-12"), PlainType::kInt);
  EXPECT_EQ(plain("0x1F"), PlainType::kInt);
  EXPECT_EQ(plain("1e3"), PlainType::kFloat);
  EXPECT_EQ(plain(".5"), PlainType::kFloat);
  EXPECT_EQ(plain("500m"), PlainType::kString);
  EXPECT_EQ(plain("1.2.3"), PlainType::kString);
}

}  // namespace
}  // namespace sluice::dsl
