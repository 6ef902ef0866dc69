#include "engine/store/aws_config.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace sluice {

namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Status LineError(const std::string& file, int line, const std::string& what) {
  return Status::InvalidArgument(file + ":" + std::to_string(line) + ": " + what);
}

// The value of `key` in `section` of `ini`; "" when absent.
std::string Get(const IniSections& ini, const std::string& section, const std::string& key) {
  auto s = ini.find(section);
  if (s == ini.end()) return "";
  auto k = s->second.find(key);
  return k == s->second.end() ? "" : k->second;
}

}  // namespace

Result<IniSections> ParseIni(const std::string& text, const std::string& file) {
  IniSections out;
  std::string section;  // "" = before the first [section]
  std::string block;    // the key of a nested block being read, "" = none
  std::istringstream in(text);
  std::string raw;
  for (int line = 1; std::getline(in, raw); ++line) {
    if (static_cast<int64_t>(raw.size()) > kMaxAwsLineBytes) {
      return Error(LineError(file, line, "line longer than " + std::to_string(kMaxAwsLineBytes) + " bytes"));
    }
    const std::string t = Trim(raw);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    const bool indented = raw[0] == ' ' || raw[0] == '\t';
    if (t[0] == '[') {
      if (t.back() != ']') return Error(LineError(file, line, "a section header must end with ']'"));
      section = Trim(t.substr(1, t.size() - 2));
      // "[profile   dev]" is "[profile dev]".
      if (section.rfind("profile", 0) == 0 && section.size() > 7 && std::isspace(static_cast<unsigned char>(section[7])))
        section = "profile " + Trim(section.substr(7));
      if (section.empty()) return Error(LineError(file, line, "empty section name '[]'"));
      out[section];
      block.clear();
      continue;
    }
    auto eq = t.find('=');
    if (eq == std::string::npos) {
      return Error(LineError(file, line, "expected 'key = value', a [section] or a comment"));
    }
    std::string key = Lower(Trim(t.substr(0, eq)));
    std::string value = Trim(t.substr(eq + 1));
    if (key.empty()) return Error(LineError(file, line, "a line starting with '=' has no key"));
    if (section.empty()) {
      return Error(LineError(file, line, "'" + key + "' is outside any [section]"));
    }
    if (indented && !block.empty()) {
      out[section][block + "." + key] = value;
      continue;
    }
    block = value.empty() ? key : "";
    out[section][key] = value;
  }
  return out;
}

Result<IniSections> ReadIniFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return IniSections{};
    return Error(Status::FailedPrecondition("cannot read " + path + ": " + std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return Error(Status::FailedPrecondition("cannot read " + path + ": not a regular file"));
  if (st.st_size > kMaxAwsFileBytes) {
    return Error(Status::InvalidArgument(path + " is " + std::to_string(st.st_size) + " bytes; an AWS config file may be at most " +
                                         std::to_string(kMaxAwsFileBytes)));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(Status::FailedPrecondition("cannot read " + path + ": " + std::strerror(errno)));
  std::string text;
  text.reserve(static_cast<size_t>(st.st_size));
  // Read at most one byte past the limit: the file may have grown.
  std::istreambuf_iterator<char> it(in), end;
  for (; it != end && static_cast<int64_t>(text.size()) <= kMaxAwsFileBytes; ++it) text.push_back(*it);
  if (static_cast<int64_t>(text.size()) > kMaxAwsFileBytes) {
    return Error(Status::InvalidArgument(path + " is larger than " + std::to_string(kMaxAwsFileBytes) +
                                         " bytes, the most an AWS config file may be"));
  }
  return ParseIni(text, path);
}

Result<AwsSettings> ResolveAwsSettings(const EnvLookup& env) {
  AwsSettings s;
  const std::string home = env("HOME");
  std::string credentials_file = env("AWS_SHARED_CREDENTIALS_FILE");
  if (credentials_file.empty() && !home.empty()) credentials_file = home + "/.aws/credentials";
  std::string config_file = env("AWS_CONFIG_FILE");
  if (config_file.empty() && !home.empty()) config_file = home + "/.aws/config";
  const std::string named_profile = env("AWS_PROFILE");
  const std::string profile = named_profile.empty() ? "default" : named_profile;

  IniSections credentials, config;
  if (!credentials_file.empty()) {
    auto read = ReadIniFile(credentials_file);
    if (!read) return Error(read.error());
    credentials = std::move(*read);
  }
  if (!config_file.empty()) {
    auto read = ReadIniFile(config_file);
    if (!read) return Error(read.error());
    config = std::move(*read);
  }
  // The config file names a profile [profile NAME]; [default] for the default.
  std::string config_section = "profile " + profile;
  if (profile == "default" && !config.count(config_section)) config_section = "default";
  if (!named_profile.empty() && !credentials.count(profile) && !config.count(config_section)) {
    return Error(Status::InvalidArgument("AWS_PROFILE=" + profile + ": no profile '" + profile + "' in " +
                                         (credentials_file.empty() ? "" : credentials_file + " or ") + config_file));
  }
  // A profile setting: the credentials file first, then the config file.
  auto setting = [&](const std::string& key) {
    std::string v = Get(credentials, profile, key);
    return v.empty() ? Get(config, config_section, key) : v;
  };

  for (const char* name : {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "SLUICE_S3_ENDPOINT"}) {
    if (std::string v = env(name); !v.empty()) {
      s.endpoint = v;
      s.endpoint_from = name;
      break;
    }
  }
  if (s.endpoint.empty()) {
    for (const char* key : {"s3.endpoint_url", "endpoint_url"}) {
      if (std::string v = setting(key); !v.empty()) {
        s.endpoint = v;
        s.endpoint_from = "profile '" + profile + "' " + key;
        break;
      }
    }
  }

  for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION", "SLUICE_S3_REGION"}) {
    if (std::string v = env(name); !v.empty()) {
      s.region = v;
      break;
    }
  }
  if (s.region.empty()) s.region = setting("region");
  if (s.region.empty()) s.region = "us-east-1";

  s.access_key = env("AWS_ACCESS_KEY_ID");
  s.secret_key = env("AWS_SECRET_ACCESS_KEY");
  if (!s.access_key.empty() && !s.secret_key.empty()) {
    s.session_token = env("AWS_SESSION_TOKEN");
    s.credentials_from = "environment";
  } else {
    s.access_key.clear();
    s.secret_key.clear();
    struct Source {
      const IniSections* ini;
      const std::string* file;
      const std::string* section;
    };
    for (const Source& src : {Source{&credentials, &credentials_file, &profile},
                              Source{&config, &config_file, &config_section}}) {
      std::string id = Get(*src.ini, *src.section, "aws_access_key_id");
      std::string secret = Get(*src.ini, *src.section, "aws_secret_access_key");
      if (id.empty() || secret.empty()) continue;
      s.access_key = id;
      s.secret_key = secret;
      s.session_token = Get(*src.ini, *src.section, "aws_session_token");
      s.credentials_from = *src.file + " [" + *src.section + "]";
      break;
    }
  }

  s.ca_bundle = env("AWS_CA_BUNDLE");
  if (s.ca_bundle.empty()) s.ca_bundle = setting("ca_bundle");
  return s;
}

}  // namespace sluice
