#include "engine/base64.h"

#include <openssl/evp.h>

namespace sluice {
namespace {

bool InAlphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock writes a NUL
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text, const std::string& what) {
  auto invalid = [&](const std::string& why) {
    return Error(Status::InvalidArgument(what + " is not valid base64 (" + why + ")"));
  };
  std::string compact;
  compact.reserve(text.size());
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (!InAlphabet(c) && c != '=') return invalid("unexpected character '" + std::string(1, c) + "'");
    compact.push_back(c);
  }
  if (compact.size() % 4 != 0) {
    return invalid(std::to_string(compact.size()) +
                   " characters, not a multiple of 4: the text is cut short or its '=' padding is missing");
  }
  // EVP_DecodeBlock takes '=' as zero bits wherever it stands, so where the
  // padding may stand is checked here: only the last one or two characters.
  size_t first_pad = compact.find('=');
  size_t padding = first_pad == std::string::npos ? 0 : compact.size() - first_pad;
  if (padding > 2 || (padding > 0 && compact.find_first_not_of('=', first_pad) != std::string::npos))
    return invalid("'=' padding before the end");
  std::string out(compact.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(compact.data()), static_cast<int>(compact.size()));
  if (n < 0 || static_cast<size_t>(n) != out.size()) return invalid("OpenSSL refused it");
  // EVP_DecodeBlock decodes the padding as zero bytes; they are not data.
  out.resize(out.size() - padding);
  return out;
}

}  // namespace sluice
