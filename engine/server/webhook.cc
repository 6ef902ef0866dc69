#include "engine/server/webhook.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

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

bool IsDeliveryId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (c <= ' ' || c >= 0x7f) return false;
  return true;
}

DeliveryLog::DeliveryLog(std::string path, Duration window, size_t capacity)
    : path_(std::move(path)), window_(window), capacity_(std::max<size_t>(1, capacity)) {}

DeliveryLog::~DeliveryLog() {
  if (out_) std::fclose(out_);
}

Status DeliveryLog::Open(TimePoint now) {
  std::lock_guard lock(mu_);
  if (path_.empty()) return Status::Ok();
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    long long seconds = 0;
    std::string key;
    if (!(fields >> seconds >> key) || seen_.count(key)) continue;
    TimePoint at{std::chrono::seconds(seconds)};
    seen_[key] = at;
    order_.emplace_back(at, key);
  }
  std::stable_sort(order_.begin(), order_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  ForgetOld(now);
  return Rewrite();
}

void DeliveryLog::ForgetOld(TimePoint now) {
  while (!order_.empty() && (order_.front().first + window_ < now || order_.size() > capacity_)) {
    seen_.erase(order_.front().second);
    order_.pop_front();
  }
}

Status DeliveryLog::Rewrite() {
  if (out_) std::fclose(out_);
  out_ = nullptr;
  appended_ = 0;
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream file(tmp, std::ios::trunc);
    for (const auto& [at, key] : order_)
      file << std::chrono::duration_cast<std::chrono::seconds>(at.time_since_epoch()).count() << " "
           << key << "\n";
    if (!file.flush())
      return Status::Unavailable("cannot write " + tmp + "; webhook deliveries are remembered in memory only");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path_, ec);
  if (ec)
    return Status::Unavailable("cannot replace " + path_ + ": " + ec.message() +
                               "; webhook deliveries are remembered in memory only");
  out_ = std::fopen(path_.c_str(), "a");
  if (!out_)
    return Status::Unavailable("cannot append to " + path_ +
                               "; webhook deliveries are remembered in memory only");
  return Status::Ok();
}

bool DeliveryLog::Claim(const std::string& key, TimePoint now, TimePoint* first_seen) {
  std::lock_guard lock(mu_);
  ForgetOld(now);
  if (auto it = seen_.find(key); it != seen_.end()) {
    if (first_seen) *first_seen = it->second;
    return false;
  }
  seen_[key] = now;
  order_.emplace_back(now, key);
  ForgetOld(now);
  if (out_) {
    std::fprintf(out_, "%lld %s\n",
                 static_cast<long long>(
                     std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count()),
                 key.c_str());
    std::fflush(out_);
    if (++appended_ >= capacity_) (void)Rewrite();
  }
  return true;
}

}  // namespace sluice::server
