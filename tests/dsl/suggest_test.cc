#include "dsl/suggest.h"

#include <gtest/gtest.h>

namespace sluice::dsl {
namespace {

TEST(EditDistance, CountsTranspositionsAsOneEdit) {
  EXPECT_EQ(EditDistance("retries", "retries"), 0u);
  EXPECT_EQ(EditDistance("retires", "retries"), 1u);
  EXPECT_EQ(EditDistance("comand", "command"), 1u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
}

TEST(ClosestMatch, PicksTheNearestCloseEnoughCandidate) {
  const std::vector<std::string> keys = {"name", "command", "retries", "resources", "maxBackoff"};
  EXPECT_EQ(ClosestMatch("retires", keys), "retries");
  EXPECT_EQ(ClosestMatch("maxbackoff", keys), "maxBackoff");  // case only
  EXPECT_EQ(ClosestMatch("resorces", keys), "resources");
  EXPECT_EQ(ClosestMatch("colour", keys), "");
  EXPECT_EQ(ClosestMatch("name", keys), "");  // an exact match is not a suggestion
  EXPECT_EQ(DidYouMean("comand", keys), "; did you mean 'command'?");
  EXPECT_EQ(DidYouMean("zzz", keys), "");
}

}  // namespace
}  // namespace sluice::dsl
