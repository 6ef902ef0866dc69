#include "engine/time_format.h"

#include <chrono>

#include <gtest/gtest.h>

namespace sluice {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

system_clock::time_point At(int64_t ms_since_epoch) { return system_clock::time_point(milliseconds(ms_since_epoch)); }

TEST(IsoTimeTest, UtcWithMilliseconds) {
  EXPECT_EQ(IsoTime(At(0)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(IsoTime(At(1795620612345)), "2026-11-25T15:30:12.345Z");
  EXPECT_EQ(IsoTime(At(951782400000)), "2000-02-29T00:00:00.000Z");
}

TEST(IsoTimeTest, SubMillisecondsAreDropped) {
  auto t = At(1795620612345) + std::chrono::microseconds(999);
  EXPECT_EQ(IsoTime(t), "2026-11-25T15:30:12.345Z");
}

TEST(IsoTimeTest, BeforeTheEpochRoundsDown) {
  EXPECT_EQ(IsoTime(At(-1)), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(IsoTime(At(-1000)), "1969-12-31T23:59:59.000Z");
  EXPECT_EQ(IsoTime(At(0) - std::chrono::microseconds(1)), "1969-12-31T23:59:59.999Z");
}

TEST(IsoTimeTest, EdgesOfWhatATimePointHolds) {
  EXPECT_EQ(IsoTime(system_clock::time_point::min()), "1677-09-21T00:12:43.145Z");
  EXPECT_EQ(IsoTime(system_clock::time_point::max()), "2262-04-11T23:47:16.854Z");
}

}  // namespace
}  // namespace sluice
