#include "engine/base64.h"

#include <string>

#include <gtest/gtest.h>

namespace sluice {
namespace {

const std::string kWhat = "kubeconfig: certificate-authority-data of cluster \"c\"";

std::string Decoded(const std::string& text) {
  auto r = Base64Decode(text, kWhat);
  EXPECT_TRUE(r.has_value()) << r.error().message();
  return r ? *r : "<error>";
}

std::string ErrorOf(const std::string& text) {
  auto r = Base64Decode(text, kWhat);
  if (r) return "decoded: " + *r;
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  return r.error().message();
}

TEST(Base64Test, EncodesWithPadding) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(std::string("\0\xff\xfe", 3)), "AP/+");
}

TEST(Base64Test, DecodesWhatItEncodes) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "user:s3cret"}) {
    EXPECT_EQ(Decoded(Base64Encode(s)), s);
  }
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  EXPECT_EQ(Decoded(Base64Encode(bytes)), bytes);
}

TEST(Base64Test, SkipsLineBreaksAndSpaces) {
  EXPECT_EQ(Decoded("LS0tLS1CRUdJ\nTiBDRVJU\r\nSUZJQ0FURS0tLS0tCg==\n"), "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(Decoded(" Zm9v YmFy "), "foobar");
  EXPECT_EQ(Decoded("Zg=\n="), "f");
}

TEST(Base64Test, RefusesCharactersOutsideTheAlphabet) {
  EXPECT_EQ(ErrorOf("Zm9v!mFy"), kWhat + " is not valid base64 (unexpected character '!')");
  EXPECT_EQ(ErrorOf("Zm9v\tYmFy"), kWhat + " is not valid base64 (unexpected character '\t')");
  // URL-safe base64 is another alphabet.
  EXPECT_EQ(ErrorOf("AP_-"), kWhat + " is not valid base64 (unexpected character '_')");
}

TEST(Base64Test, RefusesMissingPaddingAndCutText) {
  EXPECT_EQ(ErrorOf("Zg"), kWhat +
                               " is not valid base64 (2 characters, not a multiple of 4: the text is cut short or "
                               "its '=' padding is missing)");
  EXPECT_EQ(ErrorOf("Zm9vY"), kWhat +
                                  " is not valid base64 (5 characters, not a multiple of 4: the text is cut short "
                                  "or its '=' padding is missing)");
}

TEST(Base64Test, RefusesPaddingBeforeTheEnd) {
  const std::string misplaced = kWhat + " is not valid base64 ('=' padding before the end)";
  EXPECT_EQ(ErrorOf("Zg==Zm8="), misplaced);  // two encodings glued together
  EXPECT_EQ(ErrorOf("Zm=v"), misplaced);
  EXPECT_EQ(ErrorOf("Z==="), misplaced);
  EXPECT_EQ(ErrorOf("===="), misplaced);
}

}  // namespace
}  // namespace sluice
