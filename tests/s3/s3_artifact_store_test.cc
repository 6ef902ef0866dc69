// S3ArtifactStore against a real S3-compatible server: SeaweedFS, started by
// the CTest fixture "s3" (tests/s3/CMakeLists.txt), which writes its endpoint
// and generated credentials to SLUICE_TEST_S3_STATE/env. Each test works in
// a prefix of its own.

#include "engine/store/s3_artifact_store.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "engine/sha256.h"
#include "tests/support/free_port.h"
#include "tests/support/s3_server.h"
#include "tests/support/subprocess.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testutil::FreePort;
using testutil::ReadFile;
using testutil::RunProcess;

void WriteFile(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// KEY=VALUE lines of the fixture's env file; empty when it does not exist.
std::map<std::string, std::string> ServerEnv() { return testutil::S3ServerEnv(SLUICE_TEST_S3_STATE); }

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto env = ServerEnv();
    if (env.empty()) {
      auto bin = RunProcess({SLUICE_WEED_SCRIPT, "bin"}, fs::temp_directory_path().string());
      std::string weed = bin.out.substr(0, bin.out.find('\n'));
      GTEST_SKIP() << "no S3 server: SeaweedFS's weed binary " << (fs::exists(weed) ? "exists at " : "is not built at ")
                   << weed << " but the s3 fixture did not start it (SLUICE_SKIP_S3=1?); "
                   << "`ctest --test-dir build -L s3` builds and starts it";
    }
    char tmpl[] = "/tmp/sluice-s3-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // One bucket for all tests, a prefix of its own for each.
    options_ = testutil::TestBucketOptions(env, "t");
    options_.prefix += "/cache";
    Status created = S3Client(options_).CreateBucket();
    ASSERT_TRUE(created.ok()) << StatusCodeName(created.code()) << ": " << created.message();
  }

  void TearDown() override {
    if (!dir_.empty()) {
      std::error_code ec;
      // Stored artifacts are read-only: make them removable first.
      for (auto& e : fs::recursive_directory_iterator(dir_, ec))
        fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
      fs::remove_all(dir_, ec);
    }
  }

  // A store on the test bucket caching under dir_/<name>.
  std::unique_ptr<S3ArtifactStore> Open(const std::string& name) {
    auto store = S3ArtifactStore::Open(options_, dir_ + "/" + name);
    EXPECT_TRUE(store.has_value()) << (store ? "" : store.error().message());
    return store ? std::move(*store) : nullptr;
  }

  std::string dir_;
  S3Options options_;
};

TEST_F(S3StoreTest, FileRoundTripThroughTheBucket) {
  WriteFile(dir_ + "/model.bin", "weights 0.1 0.2\n");
  auto a = Open("a");
  auto rec = a->Put(dir_ + "/model.bin", ArtifactType::kModel);
  ASSERT_TRUE(rec.has_value()) << rec.error().message();
  const std::string hex = Sha256Hex("weights 0.1 0.2\n");
  EXPECT_EQ(rec->digest, "sha256:" + hex);
  EXPECT_EQ(rec->uri, "s3://" + options_.bucket + "/" + options_.prefix + "/cas/sha256/" + hex.substr(0, 2) + "/" + hex);
  EXPECT_EQ(a->client().uploads(), 1);

  // Another machine: an empty local cache, the same bucket.
  auto b = Open("b");
  auto path = b->LocalPath(rec->digest);
  ASSERT_TRUE(path.has_value()) << path.error().message();
  EXPECT_EQ(*path, dir_ + "/b/cas/sha256/" + hex.substr(0, 2) + "/" + hex);
  EXPECT_EQ(ReadFile(*path), "weights 0.1 0.2\n");
  EXPECT_EQ(*Sha256File(*path), hex);
  EXPECT_EQ(b->downloads(), 1);
  // Now cached locally: no second download.
  ASSERT_TRUE(b->LocalPath(rec->digest).has_value());
  EXPECT_EQ(b->downloads(), 1);
}

TEST_F(S3StoreTest, DirectoryRoundTripKeepsTreeModesAndLinks) {
  WriteFile(dir_ + "/model/weights.txt", "0.5\n");
  WriteFile(dir_ + "/model/sub/config.json", "{}\n");
  WriteFile(dir_ + "/model/run.sh", "#!/bin/sh\necho hi\n");
  fs::permissions(dir_ + "/model/run.sh", fs::perms::owner_exec, fs::perm_options::add);
  fs::create_symlink("weights.txt", dir_ + "/model/latest");
  auto a = Open("a");
  auto rec = a->Put(dir_ + "/model", ArtifactType::kModel);
  ASSERT_TRUE(rec.has_value()) << rec.error().message();
  EXPECT_TRUE(rec->is_directory);
  EXPECT_EQ(rec->digest, *FileArtifactStore::DigestOf(dir_ + "/model"));
  // Three files, one link text, one manifest.
  EXPECT_EQ(a->client().uploads(), 5);

  auto b = Open("b");
  auto path = b->LocalPath(rec->digest);
  ASSERT_TRUE(path.has_value()) << path.error().message();
  EXPECT_EQ(*FileArtifactStore::DigestOf(*path), rec->digest);
  EXPECT_EQ(ReadFile(*path + "/sub/config.json"), "{}\n");
  EXPECT_EQ(fs::read_symlink(*path + "/latest"), "weights.txt");
  EXPECT_TRUE((fs::status(*path + "/run.sh").permissions() & fs::perms::owner_exec) != fs::perms::none);
  EXPECT_TRUE((fs::status(*path + "/weights.txt").permissions() & fs::perms::owner_exec) == fs::perms::none);
}

TEST_F(S3StoreTest, PutOfADigestAlreadyInTheBucketUploadsNothing) {
  WriteFile(dir_ + "/data.csv", "a,b\n1,2\n");
  WriteFile(dir_ + "/tree/x.txt", "x\n");
  auto a = Open("a");
  ASSERT_TRUE(a->Put(dir_ + "/data.csv", ArtifactType::kDataset).has_value());
  ASSERT_TRUE(a->Put(dir_ + "/tree", ArtifactType::kDataset).has_value());
  EXPECT_EQ(a->client().uploads(), 3);

  auto b = Open("b");
  int64_t before = b->client().requests();
  auto file = b->Put(dir_ + "/data.csv", ArtifactType::kDataset);
  auto tree = b->Put(dir_ + "/tree", ArtifactType::kDataset);
  ASSERT_TRUE(file.has_value() && tree.has_value());
  EXPECT_EQ(b->client().uploads(), 0);
  EXPECT_EQ(b->client().requests() - before, 2);  // one HEAD each
  // The same content again from the same store: HEAD only, no upload.
  ASSERT_TRUE(a->Put(dir_ + "/data.csv", ArtifactType::kDataset).has_value());
  EXPECT_EQ(a->client().uploads(), 3);
}

TEST_F(S3StoreTest, CorruptedObjectIsADigestMismatchNamingTheDigest) {
  WriteFile(dir_ + "/model.bin", "good bytes\n");
  auto a = Open("a");
  auto rec = a->Put(dir_ + "/model.bin", ArtifactType::kModel);
  ASSERT_TRUE(rec.has_value());
  const std::string hex = rec->digest.substr(7);
  const std::string key = a->KeyFor(hex);
  // Someone overwrites the object through the S3 API.
  ASSERT_TRUE(a->client().PutBytes(key, "evil bytes\n", Sha256Hex("evil bytes\n"), "file").ok());

  auto b = Open("b");
  auto path = b->LocalPath(rec->digest);
  ASSERT_FALSE(path.has_value());
  EXPECT_EQ(path.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(path.error().message(), "artifact " + rec->digest + " downloaded from s3://" + options_.bucket + "/" + key +
                                        " does not match its digest (the bytes hash to sha256:" +
                                        Sha256Hex("evil bytes\n") + "): the object was corrupted or replaced");
  // Nothing was kept in the local cache.
  EXPECT_EQ(b->cache().LocalPath(rec->digest).error().code(), StatusCode::kNotFound);
}

TEST_F(S3StoreTest, MissingObjectIsNotFound) {
  auto a = Open("a");
  const std::string hex = Sha256Hex("never stored");
  auto path = a->LocalPath("sha256:" + hex);
  ASSERT_FALSE(path.has_value());
  EXPECT_EQ(path.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(path.error().message(), "artifact sha256:" + hex + " is neither in the local store nor at s3://" +
                                        options_.bucket + "/" + a->KeyFor(hex) + " (its bytes were removed)");
}

TEST_F(S3StoreTest, WrongSecretKeyIsACredentialsError) {
  S3Options wrong = options_;
  wrong.secret_key = "not-the-secret-key";
  auto store = S3ArtifactStore::Open(wrong, dir_ + "/a");
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store.error().message(),
            "the S3 endpoint " + options_.endpoint + " refused the credentials for HEAD s3://" + options_.bucket +
                " (HTTP 403): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy");
  EXPECT_EQ(store.error().message().find(wrong.secret_key), std::string::npos);
  EXPECT_EQ(store.error().message().find(wrong.access_key), std::string::npos);
}

// The keys and endpoint of an AWS profile in the shared files, as `aws`
// would read them, open the store; a profile with wrong keys is a
// credentials error naming the file and the profile.
TEST_F(S3StoreTest, ProfileFromTheSharedFilesOpensTheStore) {
  WriteFile(dir_ + "/aws/credentials", "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n"
                                       "[seaweed]\naws_access_key_id = " + options_.access_key +
                                       "\naws_secret_access_key = " + options_.secret_key + "\n");
  WriteFile(dir_ + "/aws/config", "[profile seaweed]\nregion = us-east-1\nendpoint_url = " + options_.endpoint + "\n");
  std::map<std::string, std::string> env = {{"HOME", dir_},
                                            {"AWS_SHARED_CREDENTIALS_FILE", dir_ + "/aws/credentials"},
                                            {"AWS_CONFIG_FILE", dir_ + "/aws/config"},
                                            {"AWS_PROFILE", "seaweed"}};
  auto lookup = [&](const std::string& name) { return env.count(name) ? env[name] : std::string(); };
  const std::string url = "s3://" + options_.bucket + "/" + options_.prefix;
  auto options = S3OptionsFrom(url, "", lookup);
  ASSERT_TRUE(options.has_value()) << options.error().message();
  EXPECT_EQ(options->endpoint, options_.endpoint);
  auto store = S3ArtifactStore::Open(*options, dir_ + "/a");
  ASSERT_TRUE(store.has_value()) << store.error().message();
  WriteFile(dir_ + "/model.bin", "profile bytes\n");
  auto rec = (*store)->Put(dir_ + "/model.bin", ArtifactType::kModel);
  ASSERT_TRUE(rec.has_value()) << rec.error().message();
  EXPECT_EQ((*store)->client().uploads(), 1);

  env["AWS_PROFILE"] = "default";
  options = S3OptionsFrom(url, "", lookup);
  ASSERT_TRUE(options.has_value()) << options.error().message();
  // [default] has no endpoint_url: the flag's endpoint is given.
  EXPECT_EQ(options->endpoint, "https://s3.us-east-1.amazonaws.com");
  options = S3OptionsFrom(url, options_.endpoint, lookup);
  auto refused = S3ArtifactStore::Open(*options, dir_ + "/b");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.error().message(), "the S3 endpoint " + options_.endpoint + " refused the credentials for HEAD s3://" +
                                           options_.bucket + " (HTTP 403): check aws_access_key_id and "
                                           "aws_secret_access_key in " + dir_ + "/aws/credentials [default] and the "
                                           "bucket's policy");
}

TEST_F(S3StoreTest, UnreachableEndpointNamesTheEndpointAfterBoundedRetries) {
  S3Options gone = options_;
  gone.endpoint = "http://127.0.0.1:" + std::to_string(FreePort());
  auto start = std::chrono::steady_clock::now();
  auto store = S3ArtifactStore::Open(gone, dir_ + "/a");
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store.error().message(),
            "cannot reach the S3 endpoint " + gone.endpoint + ": Couldn't connect to server (after 4 attempts)");
  // 4 attempts with 0.2 + 0.4 + 0.8 s of backoff: bounded, generously.
  EXPECT_LT(took, std::chrono::seconds(60));
}

// Server errors are retried with backoff, a bounded number of times: a
// local HTTP server stands in for an S3 endpoint that answers 503.
TEST(S3Retry, ServerErrorsAreRetriedThenReported) {
  httplib::Server server;
  std::atomic<int> hits{0};
  std::atomic<int> failures{1000};
  server.Get(".*", [&](const httplib::Request&, httplib::Response& res) {
    res.status = hits.fetch_add(1) < failures.load() ? 503 : 200;
  });
  // bind_to_any_port listens already: connections queue until the thread accepts.
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { server.listen_after_bind(); });
  S3Options o;
  o.bucket = "bkt";
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.access_key = "key";
  o.secret_key = "secret";
  o.first_backoff = std::chrono::milliseconds(10);
  S3Client client(o);
  Status st = client.CheckBucket();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(st.message(), "the S3 endpoint " + o.endpoint + " answered HTTP 503 to HEAD s3://bkt (after 4 attempts)");
  EXPECT_EQ(hits.load(), 4);
  EXPECT_EQ(client.requests(), 4);
  // Two failures, then an answer: the request succeeds on its third attempt.
  hits = 0;
  failures = 2;
  EXPECT_TRUE(client.CheckBucket().ok());
  EXPECT_EQ(hits.load(), 3);
  server.stop();
  thread.join();
}

// The shared cache: a step computed with one store ("CI") is a cache hit
// in a fresh store ("a laptop") whose artifact store is the same bucket; the
// hit names the entry it came from and the outputs' bytes come from the
// bucket.
TEST_F(S3StoreTest, StepComputedElsewhereIsACacheHitThroughTheBucket) {
  WriteFile(dir_ + "/p/pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: shared}
steps:
  - name: make
    command: [python3, -c, "open('n.txt', 'w').write('42'); open('v', 'w').write('7')"]
    outputs:
      artifacts: [{name: n, path: n.txt}]
      params: [{name: v, path: v}]
  - name: use
    command: [python3, -c, "import sys; open('out', 'w').write(sys.argv[1])", "{{ steps.make.outputs.params.v }}"]
    outputs: {artifacts: [{name: out, path: out}]}
)yaml");
  ::setenv("AWS_ENDPOINT_URL", options_.endpoint.c_str(), 1);
  ::setenv("AWS_ACCESS_KEY_ID", options_.access_key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", options_.secret_key.c_str(), 1);
  const std::string url = "s3://" + options_.bucket + "/" + options_.prefix + "/shared";
  auto run = [&](const std::string& store) {
    return RunProcess({SLUICE_BIN, "run", "pipeline.yaml", "--store", dir_ + "/" + store, "--artifacts", url},
                      dir_ + "/p");
  };
  auto ci = run("ci");
  ASSERT_EQ(ci.exit_code, 0) << ci.out << ci.err;
  EXPECT_NE(ci.out.find("] done      make  Succeeded"), std::string::npos) << ci.out;

  // plan on the laptop says where the hits would come from.
  auto plan = RunProcess({SLUICE_BIN, "plan", "pipeline.yaml", "--store", dir_ + "/laptop", "--artifacts", url,
                          "-o", "json"},
                         dir_ + "/p");
  ASSERT_EQ(plan.exit_code, 0) << plan.out << plan.err;
  const Json predicted = Json::parse(plan.out);
  ASSERT_EQ(predicted.size(), 2u) << plan.out;
  for (const Json& step : predicted) {
    EXPECT_EQ(step["verdict"], "hit") << plan.out;
    EXPECT_EQ(step["reuse_from"].get<std::string>().rfind(url + "/cache/", 0), 0u) << plan.out;
  }

  auto laptop = run("laptop");
  ::unsetenv("AWS_ENDPOINT_URL");
  ASSERT_EQ(laptop.exit_code, 0) << laptop.out << laptop.err;
  EXPECT_NE(laptop.out.find("] cached    make  Cached"), std::string::npos) << laptop.out;
  EXPECT_NE(laptop.out.find("] cached    use  Cached"), std::string::npos) << laptop.out;
  // Where the hit came from: the entry in the bucket.
  auto status = RunProcess({SLUICE_BIN, "status", "latest", "--store", dir_ + "/laptop", "--format", "json"},
                           dir_ + "/p");
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const std::string entry_prefix = url + "/cache/";
  EXPECT_NE(status.out.find("\"cached_from\": \"" + entry_prefix), std::string::npos) << status.out;
  // The output's bytes came from the bucket into the laptop's store.
  const std::string n = Sha256Hex("42");
  EXPECT_EQ(ReadFile(dir_ + "/laptop/cas/sha256/" + n.substr(0, 2) + "/" + n), "42");
}

// A file larger than part_bytes goes up in parts: 12 MiB in 5 MiB parts is
// three parts; another machine downloads it and its digest verifies.
TEST_F(S3StoreTest, LargeFileGoesUpInPartsAndVerifiesOnDownload) {
  const int64_t size = int64_t{12} << 20;
  {
    std::ofstream out(dir_ + "/big.bin", std::ios::binary);
    std::mt19937_64 rng(7);
    std::string chunk(1 << 20, '\0');
    for (int64_t done = 0; done < size; done += static_cast<int64_t>(chunk.size())) {
      for (auto& c : chunk) c = static_cast<char>(rng());
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  options_.part_bytes = int64_t{5} << 20;
  auto a = Open("a");
  int64_t before = a->client().requests();
  auto rec = a->Put(dir_ + "/big.bin", ArtifactType::kDataset);
  ASSERT_TRUE(rec.has_value()) << rec.error().message();
  EXPECT_EQ(rec->digest, "sha256:" + *Sha256File(dir_ + "/big.bin"));
  EXPECT_EQ(a->client().uploads(), 1);
  // HEAD, initiate, 3 parts, complete.
  EXPECT_EQ(a->client().requests() - before, 6);
  std::string kind;
  ASSERT_TRUE(*a->client().Exists(a->KeyFor(rec->digest.substr(7)), &kind));
  EXPECT_EQ(kind, "file");

  auto b = Open("b");
  auto path = b->LocalPath(rec->digest);
  ASSERT_TRUE(path.has_value()) << path.error().message();
  EXPECT_EQ(fs::file_size(*path), static_cast<uintmax_t>(size));
  EXPECT_EQ("sha256:" + *Sha256File(*path), rec->digest);
}

// A part that keeps failing: the part is retried, then the upload is
// aborted (no parts left in the bucket) and the error names the endpoint.
// A local HTTP server stands in for the S3 endpoint.
TEST(S3Multipart, FailedPartIsRetriedThenTheUploadIsAborted) {
  httplib::Server server;
  std::mutex mu;
  std::vector<std::string> seen;
  auto record = [&](const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu);
    std::string q;
    for (const auto& [k, v] : req.params) q += (q.empty() ? "" : "&") + k + "=" + v;
    seen.push_back(req.method + " " + req.path + (q.empty() ? "" : "?" + q));
  };
  server.Post(".*", [&](const httplib::Request& req, httplib::Response& res) {
    record(req);
    res.set_content("<InitiateMultipartUploadResult><UploadId>up-1</UploadId></InitiateMultipartUploadResult>",
                    "application/xml");
  });
  server.Put(".*", [&](const httplib::Request& req, httplib::Response& res) {
    record(req);
    const bool first_part = req.get_param_value("partNumber") == "1";
    res.status = first_part ? 200 : 503;
    if (first_part) res.set_header("ETag", "\"e1\"");
  });
  server.Delete(".*", [&](const httplib::Request& req, httplib::Response& res) {
    record(req);
    res.status = 204;
  });
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { server.listen_after_bind(); });
  char tmpl[] = "/tmp/sluice-s3-mp-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string file = std::string(tmpl) + "/f.bin";
  std::ofstream(file, std::ios::binary) << std::string((int64_t{5} << 20) + 10, 'x');
  S3Options o;
  o.bucket = "bkt";
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.access_key = "key";
  o.secret_key = "secret";
  o.first_backoff = std::chrono::milliseconds(10);
  o.part_bytes = int64_t{5} << 20;
  S3Client client(o);
  Status st = client.PutFile("k/f", file, (int64_t{5} << 20) + 10, Sha256Hex("unused"), "file");
  server.stop();
  thread.join();
  fs::remove_all(tmpl);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(st.message(), "the S3 endpoint " + o.endpoint + " answered HTTP 503 to PUT s3://bkt/k/f (after 4 attempts)");
  EXPECT_EQ(seen, (std::vector<std::string>{"POST /bkt/k/f?uploads=", "PUT /bkt/k/f?partNumber=1&uploadId=up-1",
                                            "PUT /bkt/k/f?partNumber=2&uploadId=up-1",
                                            "PUT /bkt/k/f?partNumber=2&uploadId=up-1",
                                            "PUT /bkt/k/f?partNumber=2&uploadId=up-1",
                                            "PUT /bkt/k/f?partNumber=2&uploadId=up-1", "DELETE /bkt/k/f?uploadId=up-1"}));
  EXPECT_EQ(client.uploads(), 0);
}

TEST(S3Url, ParsesBucketAndPrefix) {
  S3Options o;
  ASSERT_TRUE(ParseS3Url("s3://ml-artifacts/team/a/", &o).ok());
  EXPECT_EQ(o.bucket, "ml-artifacts");
  EXPECT_EQ(o.prefix, "team/a");
  ASSERT_TRUE(ParseS3Url("s3://ml-artifacts", &o).ok());
  EXPECT_EQ(o.prefix, "");
  EXPECT_EQ(ParseS3Url("s3://ML/x", &o).message(),
            "'s3://ML/x': bucket name 'ML' is not valid (3 to 63 lower-case letters, digits, '-' and '.')");
  EXPECT_EQ(ParseS3Url("gs://b/x", &o).message(), "'gs://b/x' is not an S3 URL (expected s3://bucket/prefix)");
}

// `sluice run --artifacts`: a two-step pipeline whose artifacts go to the
// bucket; a run from a fresh store shares them; a store whose local cache is
// gone gets them back from the bucket, all steps cache hits.
TEST_F(S3StoreTest, SluiceRunKeepsArtifactsInTheBucket) {
  WriteFile(dir_ + "/p/pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: s3demo}
steps:
  - name: make
    command: [python3, -c, "import os; os.makedirs('data', exist_ok=True); open('data/rows.csv', 'w').write('a,b\\n1,2\\n')"]
    outputs: {artifacts: [{name: data, path: data}]}
  - name: count
    inputs: {data: "{{ steps.make.outputs.artifacts.data }}"}
    command: [python3, -c, "import sys; open('n.txt', 'w').write(str(len(open(sys.argv[1] + '/rows.csv').read().splitlines())))", "{{ inputs.data }}"]
    outputs: {artifacts: [{name: n, path: n.txt}]}
)yaml");
  ::setenv("SLUICE_S3_ENDPOINT", options_.endpoint.c_str(), 1);
  ::setenv("AWS_ACCESS_KEY_ID", options_.access_key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", options_.secret_key.c_str(), 1);
  const std::string e2e = options_.prefix + "/e2e";
  const std::string url = "s3://" + options_.bucket + "/" + e2e;
  auto run = [&](const std::string& store) {
    return RunProcess({SLUICE_BIN, "run", "pipeline.yaml", "--store", dir_ + "/" + store, "--artifacts", url},
                      dir_ + "/p");
  };
  // What the steps write, as artifacts: the digests to expect.
  WriteFile(dir_ + "/expect/data/rows.csv", "a,b\n1,2\n");
  const std::string data = *FileArtifactStore::DigestOf(dir_ + "/expect/data");
  const std::string n = "sha256:" + Sha256Hex("2");
  S3Options bucket = options_;
  bucket.prefix = e2e;
  auto remote = S3ArtifactStore::Open(bucket, dir_ + "/probe");
  ASSERT_TRUE(remote.has_value());

  auto first = run("a");
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  EXPECT_TRUE(*(*remote)->client().Exists((*remote)->KeyFor(data.substr(7))));
  EXPECT_TRUE(*(*remote)->client().Exists((*remote)->KeyFor(n.substr(7))));

  // A fresh store finds the steps in the bucket's shared cache: all hits.
  auto second = run("b");
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_NE(second.out.find("] cached    make  Cached  outputs reused from " + url + "/cache/"), std::string::npos)
      << second.out;

  // Store a loses its local bytes: the next run takes them from the bucket.
  fs::remove_all(dir_ + "/a/cas");
  auto third = run("a");
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  EXPECT_NE(third.out.find("] cached    make  Cached"), std::string::npos) << third.out;
  EXPECT_NE(third.out.find("] cached    count  Cached"), std::string::npos) << third.out;
  const std::string local_n = dir_ + "/a/cas/sha256/" + n.substr(7, 2) + "/" + n.substr(7);
  EXPECT_EQ(ReadFile(local_n), "2");
  const std::string local_data = dir_ + "/a/cas/sha256/" + data.substr(7, 2) + "/" + data.substr(7);
  EXPECT_EQ(*FileArtifactStore::DigestOf(local_data), data);

  // rerun takes the flag too: the kept step's bytes come from the bucket.
  fs::remove_all(dir_ + "/a/cas");
  auto rerun = RunProcess({SLUICE_BIN, "rerun", "latest", "--from", "count", "--store", dir_ + "/a", "--artifacts", url},
                          dir_ + "/p");
  ASSERT_EQ(rerun.exit_code, 0) << rerun.out << rerun.err;
  EXPECT_NE(rerun.out.find("] done      count  Succeeded"), std::string::npos) << rerun.out;
  EXPECT_EQ(rerun.out.find("] start     make"), std::string::npos) << rerun.out;
  EXPECT_EQ(*FileArtifactStore::DigestOf(local_data), data);

  // A wrong endpoint fails before any step runs, naming it.
  const std::string gone = "http://127.0.0.1:" + std::to_string(FreePort());
  auto refused = RunProcess({SLUICE_BIN, "run", "pipeline.yaml", "--store", dir_ + "/c", "--artifacts", url,
                             "--artifacts-endpoint", gone},
                            dir_ + "/p");
  EXPECT_EQ(refused.exit_code, 3);
  EXPECT_EQ(refused.err, "sluice: error: cannot reach the S3 endpoint " + gone +
                             ": Couldn't connect to server (after 4 attempts)\n");
}

// Where the store is chosen: the pipeline's `artifacts:` key without a
// flag, --artifacts over it; the run remembers its store, and resume and
// rerun use it without the flag and say so; backfill takes the key and the
// flag too.
TEST_F(S3StoreTest, PipelineKeyFlagAndTheRunsRecordChooseTheStore) {
  const std::string key_url = "s3://" + options_.bucket + "/" + options_.prefix + "/from-key";
  const std::string flag_url = "s3://" + options_.bucket + "/" + options_.prefix + "/from-flag";
  WriteFile(dir_ + "/p/pipeline.yaml", R"yaml(apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: s3key}
artifacts: )yaml" + key_url + R"yaml(
schedule: {cron: "0 6 * * *"}
steps:
  - name: make
    command: [python3, -c, "open('n.txt', 'w').write('7')"]
    outputs: {artifacts: [{name: n, path: n.txt}]}
  - name: fail
    depends: [make]
    command: [python3, -c, "import os, sys; sys.exit(0 if os.path.exists(os.environ['FLAG']) else 1)"]
    env: {FLAG: ")yaml" + dir_ + R"yaml(/ok"}
)yaml");
  ::setenv("AWS_ENDPOINT_URL", options_.endpoint.c_str(), 1);
  ::setenv("AWS_ACCESS_KEY_ID", options_.access_key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", options_.secret_key.c_str(), 1);
  ::unsetenv("SLUICE_S3_ENDPOINT");
  const std::string n = Sha256Hex("7");
  S3Client client(options_);
  auto in_bucket = [&](const std::string& prefix) {
    auto there = client.Exists(prefix + "/cas/sha256/" + n.substr(0, 2) + "/" + n);
    return there.has_value() && *there;
  };
  const std::string store = dir_ + "/store";
  auto sluice = [&](std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), SLUICE_BIN);
    args.insert(args.end(), {"--store", in.empty() ? store : in});
    return RunProcess(args, dir_ + "/p");
  };

  // The pipeline's key, no flag: the header names the bucket; `fail` fails.
  auto first = sluice({"run", "pipeline.yaml", "--run-id", "s3key-1"});
  ASSERT_EQ(first.exit_code, 1) << first.out << first.err;
  EXPECT_EQ(first.out.substr(0, first.out.find('\n')),
            "sluice: run s3key-1 of s3key (store " + store + ", artifacts " + key_url + ")");
  EXPECT_TRUE(in_bucket(options_.prefix + "/from-key"));
  EXPECT_FALSE(in_bucket(options_.prefix + "/from-flag"));

  // resume without the flag: the recorded store, said so.
  WriteFile(dir_ + "/ok", "");
  auto resumed = sluice({"resume", "s3key-1"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_EQ(resumed.out.substr(0, resumed.out.find("\nsluice: run")),
            "sluice: artifacts in " + key_url + ", where run s3key-1 kept them (--artifacts to use another store)");
  EXPECT_NE(resumed.out.find("sluice: run s3key-1 of s3key (store " + store + ", artifacts " + key_url + ")\n"),
            std::string::npos)
      << resumed.out;

  // The flag beats the key, and the run records it: its rerun goes there.
  auto flagged = sluice({"run", "pipeline.yaml", "--run-id", "s3key-2", "--no-cache", "--artifacts", flag_url});
  ASSERT_EQ(flagged.exit_code, 0) << flagged.out << flagged.err;
  EXPECT_EQ(flagged.out.substr(0, flagged.out.find('\n')),
            "sluice: run s3key-2 of s3key (store " + store + ", artifacts " + flag_url + ")");
  EXPECT_TRUE(in_bucket(options_.prefix + "/from-flag"));
  auto rerun = sluice({"rerun", "s3key-2", "--from", "fail", "--run-id", "s3key-3"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.out << rerun.err;
  EXPECT_EQ(rerun.out.substr(0, rerun.out.find('\n')),
            "sluice: artifacts in " + flag_url + ", where run s3key-2 kept them (--artifacts to use another store)");

  // backfill takes the flag too (a store of its own: a cache hit would
  // upload nothing).
  auto backfill = sluice({"backfill", "pipeline.yaml", "--from", "2026-11-01", "--to", "2026-11-01", "--artifacts",
                          "s3://" + options_.bucket + "/" + options_.prefix + "/backfill"},
                         dir_ + "/backfill-store");
  ASSERT_EQ(backfill.exit_code, 0) << backfill.out << backfill.err;
  EXPECT_EQ(backfill.out, "2026-11-01T06:00:00Z  s3key-cron-20261101-060000  Succeeded\n");
  EXPECT_TRUE(in_bucket(options_.prefix + "/backfill"));
  ::unsetenv("AWS_ENDPOINT_URL");
}

}  // namespace
}  // namespace sluice
