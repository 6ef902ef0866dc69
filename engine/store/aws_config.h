#pragma once
// The AWS SDKs' standard settings for an S3 client: endpoint, region and
// credentials from the environment variables and the shared config and
// credentials files (~/.aws/config, ~/.aws/credentials), resolved in the
// order the AWS CLI and SDKs use, so a machine set up for `aws s3` needs
// nothing more for sluice.
//
// The files are INI text read by a small, bounded reader: at most
// kMaxAwsFileBytes per file, lines of at most kMaxAwsLineBytes, and a
// malformed line is an error naming file:line. Secret values (keys, session
// tokens) are never part of an error message.

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "engine/status.h"

namespace sluice {

// Largest shared config or credentials file read.
inline constexpr int64_t kMaxAwsFileBytes = int64_t{1} << 20;
// Longest line in such a file.
inline constexpr int64_t kMaxAwsLineBytes = 8192;

// One parsed INI file: section name -> key -> value. Keys are lower-cased;
// section names are kept as written ("default", "profile dev"). A nested
// block (a key with no value followed by indented "key = value" lines, as
// in `s3 =\n  addressing_style = path`) becomes keys "s3.addressing_style".
using IniSections = std::map<std::string, std::map<std::string, std::string>>;

// Parses INI `text` read from `file` (used in messages only). Blank lines
// and lines starting with '#' or ';' are comments. Errors:
// kInvalidArgument "FILE:LINE: ..." for a malformed line (no '=' and not a
// [section], a key outside any section, an empty section name, a line
// longer than kMaxAwsLineBytes). The offending line's text is not quoted:
// it may hold a secret.
Result<IniSections> ParseIni(const std::string& text, const std::string& file);

// Reads and parses the INI file at `path`. A missing file is an empty
// result, not an error. Errors: kInvalidArgument (malformed, or larger than
// kMaxAwsFileBytes), kFailedPrecondition (exists but cannot be read).
Result<IniSections> ReadIniFile(const std::string& path);

// The resolved settings. Secrets: access_key, secret_key, session_token.
struct AwsSettings {
  std::string endpoint;       // "" when no setting names one
  std::string endpoint_from;  // which setting gave it, e.g. "AWS_ENDPOINT_URL"
  std::string region;         // never "": us-east-1 when nothing names one
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // "" = none
  std::string credentials_from;  // e.g. "environment" or "/root/.aws/credentials [default]"; "" = none found
  std::string ca_bundle;      // "" = the system's CA certificates
};

// Looks an environment variable up; "" when unset.
using EnvLookup = std::function<std::string(const std::string&)>;

// The settings from the environment `env` and the shared files it points to.
//   endpoint:    AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, SLUICE_S3_ENDPOINT
//                (sluice's older name), the profile's endpoint_url (or its
//                `s3 = / endpoint_url =` block); else "".
//   region:      AWS_REGION, AWS_DEFAULT_REGION, SLUICE_S3_REGION, the
//                profile's region; else us-east-1.
//   credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+
//                AWS_SESSION_TOKEN); else the profile in the credentials
//                file ($AWS_SHARED_CREDENTIALS_FILE, default
//                ~/.aws/credentials, section [NAME]); else in the config
//                file ($AWS_CONFIG_FILE, default ~/.aws/config, section
//                [profile NAME], or [default]). NAME is $AWS_PROFILE, else
//                "default". None found: empty keys, not an error.
//   ca_bundle:   AWS_CA_BUNDLE, else the profile's ca_bundle.
// Errors: kInvalidArgument for a malformed file (file:line), and when
// $AWS_PROFILE names a profile that neither file has.
Result<AwsSettings> ResolveAwsSettings(const EnvLookup& env);

}  // namespace sluice
