#include "engine/text.h"

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(TrimTest, DropsAsciiSpaceOnBothSides) {
  EXPECT_EQ(Trim("  a b \t\n"), "a b");
  EXPECT_EQ(Trim("\v\f\r x\r\n"), "x");
  EXPECT_EQ(Trim(" \t\n"), "");
  EXPECT_EQ(Trim(""), "");
  EXPECT_EQ(Trim("none"), "none");
  // Only ASCII space: a non-breaking space (UTF-8 C2 A0) stays.
  EXPECT_EQ(Trim("\xc2\xa0x\xc2\xa0"), "\xc2\xa0x\xc2\xa0");
}

TEST(TrimTest, OneSideOnly) {
  EXPECT_EQ(TrimLeft("  a  "), "a  ");
  EXPECT_EQ(TrimRight("  a  "), "  a");
  EXPECT_EQ(TrimLeft("   "), "");
  EXPECT_EQ(TrimRight("   "), "");
}

TEST(TrimTest, GivenCharacters) {
  EXPECT_EQ(Trim("\t a,b \t", " \t"), "a,b");
  EXPECT_EQ(Trim("\n{{ x }}\n", " \t"), "\n{{ x }}\n");
  EXPECT_EQ(TrimRight("abc\r\n \n", "\n\r "), "abc");
  EXPECT_EQ(TrimLeft(" \tabc", " "), "\tabc");
}

TEST(TrimTest, ResultViewsTheInput) {
  std::string text = "  value  ";
  std::string_view t = Trim(text);
  EXPECT_EQ(t.data(), text.data() + 2);
  EXPECT_EQ(t.size(), 5u);
}

TEST(JoinTest, SeparatorOnlyBetweenParts) {
  EXPECT_EQ(Join({"a", "b", "c"}, ", "), "a, b, c");
  EXPECT_EQ(Join({"only"}, "\n"), "only");
  EXPECT_EQ(Join({}, ", "), "");
  EXPECT_EQ(Join({"", ""}, "-"), "-");
}

TEST(ErrnoTextTest, DescribesErrnoValues) {
  EXPECT_EQ(ErrnoText(ENOENT), "No such file or directory");
  EXPECT_EQ(ErrnoText(EACCES), "Permission denied");
  EXPECT_EQ(ErrnoText(100000), "unknown error");
}

TEST(UrlEncodeTest, KeepsUnreservedAndEncodesTheRestInUpperCaseHex) {
  EXPECT_EQ(UrlEncode("AZaz09-_.~"), "AZaz09-_.~");
  EXPECT_EQ(UrlEncode("a b/c"), "a%20b%2Fc");
  EXPECT_EQ(UrlEncode("app=web,tier!=db"), "app%3Dweb%2Ctier%21%3Ddb");
  EXPECT_EQ(UrlEncode("\xff\x01"), "%FF%01");
  EXPECT_EQ(UrlEncode(std::string("a\0b", 3)), "a%00b");
  EXPECT_EQ(UrlEncode(""), "");
}

TEST(EditDistanceTest, CountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(EditDistance("retries", "retries"), 0u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("abc", ""), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("kind-sluce", "kind-sluice", EditOps::kLevenshtein), 1u);
}

TEST(EditDistanceTest, TranspositionIsOneEditOnlyWhenAsked) {
  EXPECT_EQ(EditDistance("retires", "retries"), 1u);
  EXPECT_EQ(EditDistance("retires", "retries", EditOps::kWithTranspositions), 1u);
  EXPECT_EQ(EditDistance("retires", "retries", EditOps::kLevenshtein), 2u);
  EXPECT_EQ(EditDistance("ab", "ba", EditOps::kLevenshtein), 2u);
  // Optimal string alignment: no substring is edited twice.
  EXPECT_EQ(EditDistance("ca", "abc"), 3u);
}

TEST(EditDistanceTest, LongWordsBeyondTheStackRows) {
  std::string a(100, 'a'), b(100, 'a');
  b[50] = 'b';
  EXPECT_EQ(EditDistance(a, b), 1u);
  EXPECT_EQ(EditDistance(a, b + "cc", EditOps::kLevenshtein), 3u);
  EXPECT_EQ(EditDistance("x", std::string(70, 'x')), 69u);
}

}  // namespace
}  // namespace sluice
