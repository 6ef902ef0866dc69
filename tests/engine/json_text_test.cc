#include "engine/json_text.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(AppendJsonStringTest, WritesWhatJsonDumpWrites) {
  const std::string cases[] = {
      "",
      "plain",
      "say \"hi\"",
      "back\\slash",
      "\b\f\n\r\t",
      std::string("nul\0in", 6),
      "\x01\x1f\x7f",
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "bad \xff utf-8 \xc3",
      "escaped\n\"first\", then caf\xc3\xa9",
      "a long plain run, then one escape at the very end\t",
  };
  for (const auto& s : cases) {
    std::string out = "x";
    AppendJsonString(&out, s);
    EXPECT_EQ(out, "x" + Json(s).dump(-1, ' ', false, Json::error_handler_t::replace)) << s;
  }
}

TEST(JsonObjectTextTest, WritesWhatDumpWritesForTheSameObject) {
  const Json item = {{"lr", 0.1}, {"model", "rf"}};
  JsonObjectText t;
  t.Strings("argv", {"python3", "train.py", "--out=\"x\""})
      .Int("attempt", -2)
      .Bool("dirty", true)
      .StringMap("env", {{"A", "1"}, {"B", "caf\xc3\xa9"}})
      .Value("item", item)
      .Raw("none", "null")
      .String("step", "train")
      .StringMap("vars", {})
      .Strings("zero", {});
  const Json same = {{"argv", {"python3", "train.py", "--out=\"x\""}},
                     {"attempt", -2},
                     {"dirty", true},
                     {"env", {{"A", "1"}, {"B", "caf\xc3\xa9"}}},
                     {"item", item},
                     {"none", nullptr},
                     {"step", "train"},
                     {"vars", Json::object()},
                     {"zero", Json::array()}};
  EXPECT_EQ(t.Finish(), same.dump());
  EXPECT_EQ(JsonObjectText().Finish(), "{}");
}

}  // namespace
}  // namespace sluice
