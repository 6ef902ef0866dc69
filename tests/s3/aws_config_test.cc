// The AWS settings an S3 store is opened with: which environment variable or
// shared-file setting wins, and how the shared files are parsed. No server:
// the environment is a map and the files are written by each test.

#include "engine/store/aws_config.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "engine/store/s3_artifact_store.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

class AwsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-aws-config-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    env_["HOME"] = dir_;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(dir_ + "/" + rel).parent_path());
    std::ofstream(dir_ + "/" + rel, std::ios::binary) << text;
  }
  EnvLookup Env() {
    return [this](const std::string& name) {
      auto it = env_.find(name);
      return it == env_.end() ? std::string() : it->second;
    };
  }
  Result<S3Options> Options(const std::string& endpoint = "") {
    return S3OptionsFrom("s3://ml-artifacts/team-a", endpoint, Env());
  }

  std::string dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(AwsConfigTest, DefaultsToAwsInUsEast1AndAsksForCredentials) {
  auto o = Options();
  ASSERT_FALSE(o.has_value());
  EXPECT_EQ(o.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(o.error().message(),
            "--artifacts s3://ml-artifacts/team-a: no credentials for the S3 endpoint https://s3.us-east-1.amazonaws.com: "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key in the "
            "profile (AWS_PROFILE, default 'default') of ~/.aws/credentials");
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env_["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  env_["AWS_REGION"] = "eu-west-1";
  o = Options();
  ASSERT_TRUE(o.has_value()) << o.error().message();
  EXPECT_EQ(o->endpoint, "https://s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(o->region, "eu-west-1");
  EXPECT_EQ(o->bucket, "ml-artifacts");
  EXPECT_EQ(o->prefix, "team-a");
  EXPECT_EQ(o->access_key, "AKIDENV");
  EXPECT_EQ(o->session_token, "");
  EXPECT_EQ(o->credentials_from, "environment");
}

TEST_F(AwsConfigTest, EndpointPrecedence) {
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env_["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  Write(".aws/config", "[default]\nendpoint_url = http://profile:1\n");
  EXPECT_EQ(Options()->endpoint, "http://profile:1");
  env_["SLUICE_S3_ENDPOINT"] = "http://sluice:2";
  EXPECT_EQ(Options()->endpoint, "http://sluice:2");
  env_["AWS_ENDPOINT_URL"] = "http://all:3/";
  EXPECT_EQ(Options()->endpoint, "http://all:3");
  env_["AWS_ENDPOINT_URL_S3"] = "http://s3only:4";
  EXPECT_EQ(Options()->endpoint, "http://s3only:4");
  EXPECT_EQ(Options("https://flag:5")->endpoint, "https://flag:5");
  env_["AWS_ENDPOINT_URL_S3"] = "s3only:4";
  EXPECT_EQ(Options().error().message(),
            "S3 endpoint 's3only:4' (from AWS_ENDPOINT_URL_S3) is not an http:// or https:// URL");
}

TEST_F(AwsConfigTest, ServiceBlockEndpointBeatsTheProfilesGeneralOne) {
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env_["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  Write(".aws/config",
        "[default]\n"
        "endpoint_url = http://general:1\n"
        "s3 =\n"
        "  endpoint_url = http://s3block:2\n"
        "  addressing_style = path\n"
        "region = ap-south-1\n");
  auto o = Options();
  ASSERT_TRUE(o.has_value()) << o.error().message();
  EXPECT_EQ(o->endpoint, "http://s3block:2");
  EXPECT_EQ(o->region, "ap-south-1");
}

TEST_F(AwsConfigTest, RegionPrecedence) {
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env_["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  EXPECT_EQ(Options()->region, "us-east-1");
  Write(".aws/config", "[default]\nregion = eu-north-1\n");
  EXPECT_EQ(Options()->region, "eu-north-1");
  EXPECT_EQ(Options()->endpoint, "https://s3.eu-north-1.amazonaws.com");
  env_["SLUICE_S3_REGION"] = "eu-central-1";
  EXPECT_EQ(Options()->region, "eu-central-1");
  env_["AWS_DEFAULT_REGION"] = "us-west-2";
  EXPECT_EQ(Options()->region, "us-west-2");
  env_["AWS_REGION"] = "ca-central-1";
  EXPECT_EQ(Options()->region, "ca-central-1");
}

TEST_F(AwsConfigTest, CredentialsFromTheEnvironmentBeatTheFiles) {
  Write(".aws/credentials", "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n");
  auto o = Options();
  ASSERT_TRUE(o.has_value()) << o.error().message();
  EXPECT_EQ(o->access_key, "AKIDFILE");
  EXPECT_EQ(o->secret_key, "filesecret");
  EXPECT_EQ(o->credentials_from, dir_ + "/.aws/credentials [default]");
  env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env_["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  env_["AWS_SESSION_TOKEN"] = "envtoken";
  o = Options();
  EXPECT_EQ(o->access_key, "AKIDENV");
  EXPECT_EQ(o->secret_key, "envsecret");
  EXPECT_EQ(o->session_token, "envtoken");
  EXPECT_EQ(o->credentials_from, "environment");
  // Half a pair in the environment is no pair: the file's is used.
  env_.erase("AWS_SECRET_ACCESS_KEY");
  o = Options();
  EXPECT_EQ(o->access_key, "AKIDFILE");
  EXPECT_EQ(o->session_token, "");
}

TEST_F(AwsConfigTest, NamedProfileFromBothFilesAndTheirLocations) {
  env_["AWS_PROFILE"] = "ci";
  env_["AWS_SHARED_CREDENTIALS_FILE"] = dir_ + "/elsewhere/creds";
  env_["AWS_CONFIG_FILE"] = dir_ + "/elsewhere/conf";
  // The default locations are not read when the variables name others.
  Write(".aws/credentials", "[ci]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n");
  Write("elsewhere/conf",
        "# shared settings\n"
        "[default]\nregion = us-west-1\n\n"
        "[profile   ci]\n"
        "region = eu-west-3\n"
        "endpoint_url = https://minio.example:9000\n"
        "ca_bundle = /etc/ssl/private-ca.pem\n"
        "aws_access_key_id = AKIDCONF\n"
        "aws_secret_access_key = confsecret\n");
  auto o = Options();
  ASSERT_TRUE(o.has_value()) << o.error().message();
  EXPECT_EQ(o->region, "eu-west-3");
  EXPECT_EQ(o->endpoint, "https://minio.example:9000");
  EXPECT_EQ(o->ca_bundle, "/etc/ssl/private-ca.pem");
  EXPECT_EQ(o->access_key, "AKIDCONF");
  EXPECT_EQ(o->credentials_from, dir_ + "/elsewhere/conf [profile ci]");
  // The credentials file's keys beat the config file's.
  Write("elsewhere/creds",
        "[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = defsecret\n"
        "; the CI role\n"
        "[ci]\nAWS_ACCESS_KEY_ID = AKIDCI\naws_secret_access_key = cisecret\naws_session_token = citoken\n");
  o = Options();
  EXPECT_EQ(o->access_key, "AKIDCI");
  EXPECT_EQ(o->secret_key, "cisecret");
  EXPECT_EQ(o->session_token, "citoken");
  EXPECT_EQ(o->credentials_from, dir_ + "/elsewhere/creds [ci]");
  env_["AWS_CA_BUNDLE"] = "/etc/ssl/other.pem";
  EXPECT_EQ(Options()->ca_bundle, "/etc/ssl/other.pem");
  env_["AWS_PROFILE"] = "nope";
  EXPECT_EQ(Options().error().message(), "AWS_PROFILE=nope: no profile 'nope' in " + dir_ + "/elsewhere/creds or " +
                                             dir_ + "/elsewhere/conf");
}

TEST_F(AwsConfigTest, MalformedLinesAreNamedByFileAndLineWithoutTheirText) {
  Write(".aws/credentials", "[default]\naws_access_key_id = AKID\naws_secret_access_key  wJalrXUtnFEMI\n");
  auto o = Options();
  ASSERT_FALSE(o.has_value());
  EXPECT_EQ(o.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(o.error().message(),
            dir_ + "/.aws/credentials:3: expected 'key = value', a [section] or a comment");
  EXPECT_EQ(o.error().message().find("wJalr"), std::string::npos);

  EXPECT_EQ(ParseIni("region = x\n", "f").error().message(), "f:1: 'region' is outside any [section]");
  EXPECT_EQ(ParseIni("[default\n", "f").error().message(), "f:1: a section header must end with ']'");
  EXPECT_EQ(ParseIni("\n\n[ ]\n", "f").error().message(), "f:3: empty section name '[]'");
  EXPECT_EQ(ParseIni("[a]\n = v\n", "f").error().message(), "f:2: a line starting with '=' has no key");
  EXPECT_EQ(ParseIni("[a]\nk = " + std::string(kMaxAwsLineBytes, 'x') + "\n", "f").error().message(),
            "f:2: line longer than 8192 bytes");
  auto ok = ParseIni("[a]\r\nKey = v = w\r\n\t; note\r\n", "f");
  ASSERT_TRUE(ok.has_value()) << ok.error().message();
  EXPECT_EQ((*ok)["a"]["key"], "v = w");
}

TEST_F(AwsConfigTest, FilesOverTheSizeLimitAreRefused) {
  Write("big", "[a]\n" + std::string(kMaxAwsFileBytes, '#'));
  auto r = ReadIniFile(dir_ + "/big");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), dir_ + "/big is " + std::to_string(kMaxAwsFileBytes + 4) +
                                     " bytes; an AWS config file may be at most 1048576");
  // A missing file is no settings, not an error.
  EXPECT_TRUE(ReadIniFile(dir_ + "/absent")->empty());
}

// The session token travels in x-amz-security-token, and the signature
// covers it: a local HTTP server stands in for the S3 endpoint.
TEST(S3SessionToken, IsSentAndSigned) {
  httplib::Server server;
  std::string token, authorization;
  std::mutex mu;
  server.set_default_headers({});
  server.Get(".*", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    token = req.get_header_value("x-amz-security-token");
    authorization = req.get_header_value("Authorization");
    res.status = 200;
  });
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { server.listen_after_bind(); });
  S3Options o;
  o.bucket = "bkt";
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.access_key = "AKIDTEMP";
  o.secret_key = "tempsecret";
  o.session_token = "FQoGZXIvYXdzEXAMPLE";
  S3Client client(o);
  EXPECT_TRUE(client.CheckBucket().ok());
  server.stop();
  thread.join();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(token, "FQoGZXIvYXdzEXAMPLE");
  auto signed_headers = authorization.substr(authorization.find("SignedHeaders=") + 14);
  signed_headers = signed_headers.substr(0, signed_headers.find(','));
  EXPECT_EQ(signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
  EXPECT_EQ(authorization.rfind("AWS4-HMAC-SHA256 Credential=AKIDTEMP/", 0), 0u) << authorization;
}

}  // namespace
}  // namespace sluice
