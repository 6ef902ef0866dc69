#include "operators/serving/weighted_picker.h"

#include <string>

#include <gtest/gtest.h>

namespace sluice::serving {
namespace {

std::vector<int64_t> Count(WeightedPicker& picker, size_t backends, int picks) {
  std::vector<int64_t> counts(backends, 0);
  for (int i = 0; i < picks; ++i) {
    auto index = picker.Pick();
    EXPECT_TRUE(index.has_value());
    if (index) counts[*index]++;
  }
  return counts;
}

TEST(WeightedPickerTest, InterleavesLikeNginx) {
  WeightedPicker picker({5, 1, 1});
  std::string sequence;
  for (int i = 0; i < 14; ++i) sequence += static_cast<char>('a' + *picker.Pick());
  EXPECT_EQ(sequence, "aabacaaaabacaa");
}

TEST(WeightedPickerTest, ExactSharesInEveryCycle) {
  WeightedPicker picker({1, 3, 6});
  EXPECT_EQ(Count(picker, 3, 10), (std::vector<int64_t>{1, 3, 6}));
  EXPECT_EQ(Count(picker, 3, 10000), (std::vector<int64_t>{1000, 3000, 6000}));
}

TEST(WeightedPickerTest, CanaryTenPercent) {
  WeightedPicker picker({9, 1});
  EXPECT_EQ(Count(picker, 2, 10000), (std::vector<int64_t>{9000, 1000}));
}

TEST(WeightedPickerTest, ZeroWeightsAreNeverPicked) {
  WeightedPicker picker({0, 2, 0});
  EXPECT_EQ(Count(picker, 3, 7), (std::vector<int64_t>{0, 7, 0}));
  picker.Reset({0, 0});
  EXPECT_EQ(picker.Pick(), std::nullopt);
  picker.Reset({});
  EXPECT_EQ(picker.Pick(), std::nullopt);
}

TEST(WeightedPickerTest, ResetRestartsTheCycle) {
  WeightedPicker picker({1, 1});
  EXPECT_EQ(*picker.Pick(), 0u);
  picker.Reset({1, 1});
  EXPECT_EQ(*picker.Pick(), 0u);
  EXPECT_EQ(*picker.Pick(), 1u);
}

}  // namespace
}  // namespace sluice::serving
