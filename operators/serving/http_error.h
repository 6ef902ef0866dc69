#pragma once
// Human words for cpp-httplib's client errors (its own names are terse:
// "Connection", "Read"). Internal to operators/serving's .cc files.

#include <string>

#include <httplib.h>

namespace sluice::serving {

inline std::string DescribeHttpError(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "connection refused or host unreachable";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "no complete answer (the server closed the connection or timed out)";
    case httplib::Error::Write:
      return "could not send the request";
    case httplib::Error::Canceled:
      return "cancelled";
    default:
      return "HTTP client error " + httplib::to_string(error);
  }
}

}  // namespace sluice::serving
