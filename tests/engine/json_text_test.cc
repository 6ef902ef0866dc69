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
  };
  for (const auto& s : cases) {
    std::string out = "x";
    AppendJsonString(&out, s);
    EXPECT_EQ(out, "x" + Json(s).dump(-1, ' ', false, Json::error_handler_t::replace)) << s;
  }
}

}  // namespace
}  // namespace sluice
