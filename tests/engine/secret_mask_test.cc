#include "engine/secret_mask.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(MaskValuesTest, ReplacesEveryOccurrenceLongestFirst) {
  EXPECT_EQ(MaskValues("token=abc123 again abc123.", {"abc123"}, "***"), "token=*** again ***.");
  // "abc123-x" contains "abc123": the longer value is replaced whole.
  EXPECT_EQ(MaskValues("a abc123-x b abc123", {"abc123", "abc123-x"}, "<redacted>"),
            "a <redacted> b <redacted>");
  EXPECT_EQ(MaskValues("nothing here", {"", "zzz"}, "***"), "nothing here");
  EXPECT_EQ(MaskValues("aaaa", {"aa"}, "*"), "**");
}

// The value split at every possible place across two chunks, and fed one
// byte at a time: the output is the same as for the whole text.
TEST(StreamMaskerTest, ValueSplitAcrossChunksIsStillMasked) {
  const std::string text = "before s3cr3t-value middle s3cr3t-value after s3cr3";
  const std::vector<std::string> values = {"s3cr3t-value", "VALUE-derived-s3cr3t"};
  const std::string whole = MaskValues(text, values, "***");
  EXPECT_EQ(whole, "before *** middle *** after s3cr3");
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    StreamMasker m(values, "***");
    std::string out = m.Write(text.substr(0, cut));
    out += m.Write(text.substr(cut));
    out += m.Finish();
    EXPECT_EQ(out, whole) << "cut at " << cut;
  }
  StreamMasker bytes(values, "***");
  std::string out;
  for (char c : text) out += bytes.Write(std::string(1, c));
  out += bytes.Finish();
  EXPECT_EQ(out, whole);
}

TEST(StreamMaskerTest, HoldsBackOnlyWhatMayStartAValue) {
  StreamMasker m({"secret"}, "***");
  EXPECT_EQ(m.Write("line one\nse"), "line one\n");  // "se" may start "secret"
  EXPECT_EQ(m.Write("a shell\n"), "sea shell\n");
  EXPECT_EQ(m.Write("the secr"), "the ");
  EXPECT_EQ(m.Finish(), "secr");  // the stream ended before the value did
}

}  // namespace
}  // namespace sluice
