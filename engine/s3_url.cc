#include "engine/s3_url.h"

#include <algorithm>
#include <cctype>

namespace sluice {

namespace {

bool ValidPrefixChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == '/';
}

bool ValidBucketChar(char c) {
  return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' ||
         c == '.';
}

}  // namespace

Result<S3Location> ParseS3Location(const std::string& url) {
  const std::string scheme = "s3://";
  if (url.rfind(scheme, 0) != 0) {
    return Error(Status::InvalidArgument("'" + url + "' is not an S3 URL (expected s3://bucket/prefix)"));
  }
  std::string rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  S3Location loc;
  loc.bucket = rest.substr(0, slash);
  loc.prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
  while (!loc.prefix.empty() && loc.prefix.back() == '/') loc.prefix.pop_back();
  if (loc.bucket.size() < 3 || loc.bucket.size() > 63 ||
      !std::all_of(loc.bucket.begin(), loc.bucket.end(), ValidBucketChar)) {
    return Error(Status::InvalidArgument("'" + url + "': bucket name '" + loc.bucket +
                                         "' is not valid (3 to 63 lower-case letters, digits, '-' and '.')"));
  }
  if (!std::all_of(loc.prefix.begin(), loc.prefix.end(), ValidPrefixChar) ||
      loc.prefix.find("//") != std::string::npos || (!loc.prefix.empty() && loc.prefix.front() == '/')) {
    return Error(Status::InvalidArgument("'" + url +
                                         "': the prefix may hold only letters, digits, '.', '-', '_' and single '/'"));
  }
  return loc;
}

}  // namespace sluice
