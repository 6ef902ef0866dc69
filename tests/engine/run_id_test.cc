#include "engine/run_id.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

constexpr char kGrammar[] =
    ": a run id is 1-128 characters from A-Z a-z 0-9 . _ -, starts with a letter or digit and "
    "has no '..'";

TEST(RunIdTest, AcceptsGeneratedAndUserIds) {
  for (const std::string& id : std::vector<std::string>{"hello-20261125-010000-0a1f",
                                                        "nightly-cron-20261125-010000", "a", "Run_1.v2",
                                                        "0", std::string(128, 'x')})
    EXPECT_TRUE(ValidateRunId(id).ok()) << id;
}

TEST(RunIdTest, RejectsPathsControlBytesAndLongIds) {
  EXPECT_EQ(ValidateRunId("../../etc").message(), std::string("invalid run id '../../etc'") + kGrammar);
  EXPECT_EQ(ValidateRunId("a/b").message(), std::string("invalid run id 'a/b'") + kGrammar);
  EXPECT_EQ(ValidateRunId(std::string("a\0b", 3)).message(),
            std::string("invalid run id 'a\\x00b'") + kGrammar);
  EXPECT_EQ(ValidateRunId(std::string(5000, 'a')).message(),
            "invalid run id '" + std::string(40, 'a') + "... (5000 characters)'" + kGrammar);
  EXPECT_EQ(ValidateRunId("").message(), std::string("invalid run id ''") + kGrammar);
  for (const std::string& id : std::vector<std::string>{"a..b", ".hidden", "-x", "_x", "a b", "a\\b",
                                                        "x\n", "caf\xc3\xa9", std::string(129, 'x')}) {
    Status s = ValidateRunId(id);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << id;
  }
}

}  // namespace
}  // namespace sluice
