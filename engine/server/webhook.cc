#include "engine/server/webhook.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/server/config.h"

namespace sluice::server {
namespace {

std::string Hex(const unsigned char* data, size_t size) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

}  // namespace

std::string GithubSignature(std::string_view secret, std::string_view body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  return "sha256=" + Hex(mac, len);
}

bool VerifyGithubSignature(std::string_view secret, std::string_view body,
                           std::string_view header) {
  if (secret.empty()) return false;
  std::string expected = GithubSignature(secret, body);
  return ConstantTimeEquals(expected, header);
}

bool VerifyGitlabToken(std::string_view token_sha256_hex, std::string_view header) {
  if (token_sha256_hex.empty() || header.empty()) return false;
  return ConstantTimeEquals(HashToken(header), token_sha256_hex);
}

Result<PushEvent> ParsePushEvent(std::string_view body) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return Error(Status::InvalidArgument("webhook body is not a JSON object"));
  if (!doc.contains("commits") || !doc["commits"].is_array())
    return Error(Status::InvalidArgument(
        "webhook body has no 'commits' list; only push events trigger pipelines"));
  PushEvent event;
  if (doc.contains("ref") && doc["ref"].is_string()) event.ref = doc["ref"];
  if (doc.contains("after") && doc["after"].is_string()) event.after = doc["after"];
  std::set<std::string> files;
  for (const auto& commit : doc["commits"]) {
    if (!commit.is_object()) continue;
    for (const char* key : {"added", "modified"}) {
      if (!commit.contains(key) || !commit[key].is_array()) continue;
      for (const auto& f : commit[key])
        if (f.is_string()) files.insert(f.get<std::string>());
    }
  }
  event.changed.assign(files.begin(), files.end());
  return event;
}

}  // namespace sluice::server
