#include "dsl/quantity.h"

#include <gtest/gtest.h>

namespace sluice::dsl {
namespace {

TEST(ParseDuration, Units) {
  EXPECT_EQ(ParseDuration("500ms")->count(), 500);
  EXPECT_EQ(ParseDuration("30s")->count(), 30000);
  EXPECT_EQ(ParseDuration("10m")->count(), 600000);
  EXPECT_EQ(ParseDuration("1h")->count(), 3600000);
  EXPECT_EQ(ParseDuration("1h30m")->count(), 5400000);
  EXPECT_EQ(ParseDuration("1.5s")->count(), 1500);
  EXPECT_EQ(ParseDuration("2d")->count(), 172800000);
  EXPECT_EQ(ParseDuration("0")->count(), 0);
}

TEST(ParseDuration, Errors) {
  EXPECT_EQ(ParseDuration("30").error().message(), "invalid duration '30': add a unit, e.g. '30s' or '30m'");
  EXPECT_EQ(ParseDuration("10 minutes").error().message(),
            "invalid duration '10 minutes'; write a number with a unit (ms, s, m, h, d), e.g. 30s, 10m, 1h30m");
  EXPECT_FALSE(ParseDuration("").has_value());
  EXPECT_FALSE(ParseDuration("-1s").has_value());
  EXPECT_FALSE(ParseDuration("1x").has_value());
  EXPECT_FALSE(ParseDuration("h").has_value());
}

TEST(ParseCpu, CoresAndMillicores) {
  EXPECT_EQ(*ParseCpu("500m"), 500);
  EXPECT_EQ(*ParseCpu("0.5"), 500);
  EXPECT_EQ(*ParseCpu("1"), 1000);
  EXPECT_EQ(*ParseCpu("2"), 2000);
  EXPECT_EQ(*ParseCpu("0.25"), 250);
  EXPECT_EQ(*ParseCpu("0"), 0);
}

TEST(ParseCpu, Errors) {
  EXPECT_EQ(ParseCpu("-1").error().message(),
            "invalid cpu quantity '-1': it cannot be negative; write cores (1, 0.5, \"2\") or millicores (\"500m\")");
  EXPECT_EQ(ParseCpu("0.0001").error().message(),
            "invalid cpu quantity '0.0001': the smallest unit is 1m (0.001 cores); write cores (1, 0.5, \"2\") or "
            "millicores (\"500m\")");
  EXPECT_FALSE(ParseCpu("1.5m").has_value());
  EXPECT_FALSE(ParseCpu("2 cores").has_value());
}

TEST(ParseMemory, Suffixes) {
  EXPECT_EQ(*ParseMemory("512Mi"), 512LL * 1024 * 1024);
  EXPECT_EQ(*ParseMemory("1Gi"), 1024LL * 1024 * 1024);
  EXPECT_EQ(*ParseMemory("1G"), 1000000000LL);
  EXPECT_EQ(*ParseMemory("1500k"), 1500000LL);
  EXPECT_EQ(*ParseMemory("1048576"), 1048576LL);
  EXPECT_EQ(*ParseMemory("1.5Gi"), 1610612736LL);
  EXPECT_EQ(*ParseMemory("2Ti"), 2LL << 40);
}

TEST(ParseMemory, Errors) {
  EXPECT_EQ(ParseMemory("512MB").error().message(),
            "invalid memory quantity '512MB'; did you mean '512Mi' (2^20 bytes) or '512M' (10^6 bytes)?");
  EXPECT_EQ(ParseMemory("1g").error().message(),
            "invalid memory quantity '1g'; did you mean '1Gi' (2^30 bytes) or '1G' (10^9 bytes)?");
  EXPECT_EQ(ParseMemory("lots").error().message(),
            "invalid memory quantity 'lots'; write bytes with a suffix, e.g. 512Mi, 1Gi, 1G");
  EXPECT_EQ(ParseMemory("-1Gi").error().message(),
            "invalid memory quantity '-1Gi': it cannot be negative; write bytes with a suffix, e.g. 512Mi, 1Gi, 1G");
}

}  // namespace
}  // namespace sluice::dsl
