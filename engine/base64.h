#pragma once
// Standard base64 (RFC 4648 section 4, with '=' padding) through OpenSSL.

#include <string>
#include <string_view>

#include "engine/status.h"

namespace sluice {

// `data` encoded, padded to a multiple of 4 characters, on one line.
std::string Base64Encode(std::string_view data);

// Decodes `text`. Line breaks and spaces anywhere are skipped (PEM-style
// wrapping); everything else must be padded base64: characters from the
// standard alphabet, a length (without the skipped characters) that is a
// multiple of 4, and at most two '=' at the very end. Bits of the last
// character beyond the data are not checked. `what` names the text for the
// error (e.g. "kubeconfig: certificate-authority-data of cluster \"c\"").
// Errors: kInvalidArgument, "<what> is not valid base64 (...)" saying why.
Result<std::string> Base64Decode(std::string_view text, const std::string& what);

}  // namespace sluice
