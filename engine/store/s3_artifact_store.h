#pragma once
// S3ArtifactStore: content-addressed artifact bytes in an S3-compatible
// bucket (AWS S3, SeaweedFS, MinIO, ...), behind the same ArtifactStore seam
// as FileArtifactStore, with a local FileArtifactStore as its cache.
//
// Layout: an artifact whose digest is sha256:<hex> is the object
//   <prefix>/cas/sha256/<hex[0:2]>/<hex>
// and every object's bytes hash to its own name, so any object can be
// verified on its own:
//   - a file artifact is the object of its bytes (metadata
//     x-amz-meta-sluice-kind: file, or exec when its owner-execute bit is set);
//   - a directory artifact is the object of its manifest text (the one whose
//     SHA-256 is the directory's digest, see FileArtifactStore::ManifestOf;
//     x-amz-meta-sluice-kind: manifest), and each file of the directory is
//     the object of its own bytes, each symlink the object of its link text.
// Manifests rather than one tar stream per directory: every object verifies
// against its key, files shared between directory versions are stored once,
// and no archive format (or library) sits between the bytes and the digest.
// A manifest is uploaded after all of its entries, so its presence means the
// whole directory is there.
//
// Put stores the artifact in the local cache first, then uploads it unless a
// HEAD of its object finds it already in the bucket. LocalPath answers from
// the local cache, else downloads into it (streamed to a temporary file while
// hashing, bounded memory), checks the digest and renames it into place.
//
// Requests are path-style (https://endpoint/bucket/key) and signed with AWS
// Signature V4 by libcurl (CURLOPT_AWS_SIGV4); temporary credentials' session
// token goes in the signed x-amz-security-token header. TLS peers are
// verified, against S3Options::ca_bundle when one is given.
// A file is uploaded with one streamed PUT, or in parts (multipart upload)
// when larger than S3Options::part_bytes, up to S3's 5 TiB per object.
// Connection failures, timeouts, HTTP 429 and 5xx are retried max_attempts
// times with exponential backoff (each part on its own).
//
// Credentials are never logged, never part of an error message and never
// recorded: an artifact's recorded URI is s3://bucket/key.
//
// Thread-safety: safe to use from several threads (each request has its own
// curl handle); several processes may share one bucket and one local cache.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"
#include "engine/store.h"
#include "engine/store/artifact_store.h"
#include "engine/store/aws_config.h"

namespace sluice {

// Where an S3-compatible bucket is and how to reach it.
struct S3Options {
  std::string bucket;
  std::string prefix;      // key prefix without leading or trailing '/'; "" = none
  std::string endpoint;    // e.g. "https://s3.us-east-1.amazonaws.com" or "http://127.0.0.1:8333"
  std::string region = "us-east-1";
  std::string access_key;  // secret material: never logged nor put in an error
  std::string secret_key;
  std::string session_token;     // temporary credentials' token (secret); "" = none
  std::string credentials_from;  // where the keys came from, for messages ("environment", "FILE [profile]")
  std::string ca_bundle;         // PEM file of the CAs to trust; "" = the system's
  int max_attempts = 4;    // per request, retries included
  std::chrono::milliseconds first_backoff{200};  // doubled after each failed attempt
  long connect_timeout_s = 10;
  long stall_timeout_s = 60;  // a transfer moving no byte for this long fails (and is retried)
  // A file larger than this is uploaded in parts of this size (multipart
  // upload; S3's smallest part is 5 MiB), each retried on its own; larger
  // when the file would need more than kMaxParts parts.
  int64_t part_bytes = int64_t{64} << 20;
};

// Fills options->bucket and options->prefix from "s3://bucket/prefix" (the
// prefix may be empty or have several '/'-separated parts of letters, digits
// and ".-_"). Errors: kInvalidArgument naming what is wrong with `url`.
Status ParseS3Url(const std::string& url, S3Options* options);

// Options for `url` ("s3://bucket/prefix") from the AWS SDKs' standard
// settings (aws_config.h, ResolveAwsSettings) of this process's environment:
// endpoint `endpoint` when not "", else the one the settings name, else the
// AWS endpoint of the region, https://s3.<region>.amazonaws.com.
// Errors: kInvalidArgument (bad URL or endpoint, a malformed AWS config
// file, an unknown $AWS_PROFILE, no credentials).
Result<S3Options> S3OptionsFromEnvironment(const std::string& url, const std::string& endpoint);

// As S3OptionsFromEnvironment, with the environment looked up in `env`
// (tests pass a map).
Result<S3Options> S3OptionsFrom(const std::string& url, const std::string& endpoint, const EnvLookup& env);

// A minimal S3 client: the object requests S3ArtifactStore needs, signed,
// retried and with errors that name the endpoint (never the credentials).
class S3Client {
 public:
  explicit S3Client(S3Options options);

  // HEAD of the bucket. Errors: kUnavailable (endpoint unreachable, 5xx after
  // retries), kPermissionDenied (403: credentials), kNotFound (no bucket).
  Status CheckBucket();
  // PUT of the bucket (tests and first-time setup); an existing bucket owned
  // by the caller is success.
  Status CreateBucket();

  // Whether object `key` exists; its x-amz-meta-sluice-kind in *kind.
  Result<bool> Exists(const std::string& key, std::string* kind = nullptr);
  // PUT of `bytes` as object `key`; `hex` is their SHA-256 (sent as
  // x-amz-content-sha256, so the server can check the payload). `kind`, when
  // not "", becomes x-amz-meta-sluice-kind.
  Status PutBytes(const std::string& key, const std::string& bytes, const std::string& hex,
                  const std::string& kind);
  // Streamed upload of the file at `path` (`size` bytes, SHA-256 `hex`):
  // one PUT up to options().part_bytes, else a multipart upload whose parts
  // are read from the file one at a time (memory stays bounded), each
  // retried on its own; a failed multipart upload is aborted, so no parts
  // are left behind. Errors: as CheckBucket, and kFailedPrecondition when the
  // file is larger than S3ArtifactStore::kMaxObjectBytes or cannot be read.
  Status PutFile(const std::string& key, const std::string& path, int64_t size, const std::string& hex,
                 const std::string& kind);
  // Streamed GET of object `key` into the new file `path` (created 0600);
  // returns the hex SHA-256 of the bytes written and the object's
  // x-amz-meta-sluice-kind in *kind. kNotFound when there is no such object.
  Result<std::string> GetFile(const std::string& key, const std::string& path, std::string* kind = nullptr);
  // GET of a small object into memory; kFailedPrecondition when it is larger
  // than `limit` bytes.
  Result<std::string> GetBytes(const std::string& key, int64_t limit);

  // "s3://bucket/key", for messages and records.
  std::string Url(const std::string& key) const;
  const S3Options& options() const { return options_; }

  // Requests sent so far (each attempt counts), and objects uploaded; for
  // tests.
  int64_t requests() const { return requests_.load(); }
  int64_t uploads() const { return uploads_.load(); }

  // One request and its answer (defined and used in the .cc only).
  struct Request;

 private:
  Status Perform(Request& r);
  Status Attempt(Request& r, long* http_status, std::string* curl_error);
  Status PutMultipart(const std::string& key, int fd, int64_t size, const std::string& kind);
  Status UploadParts(const std::string& key, const std::string& upload_id, int fd, int64_t size, std::string* parts_xml);

  S3Options options_;
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> uploads_{0};
};

class S3ArtifactStore : public ArtifactStore {
 public:
  // S3's limits on one object: 5 TiB, in at most 10,000 parts (of at least
  // 5 MiB but the last). Larger files are refused with a clear error.
  static constexpr int64_t kMaxObjectBytes = int64_t{5} << 40;
  static constexpr int64_t kMaxParts = 10000;
  static constexpr int64_t kMinPartBytes = int64_t{5} << 20;
  // Largest directory manifest read into memory on download.
  static constexpr int64_t kMaxManifestBytes = int64_t{64} << 20;

  // A store on the bucket of `options`, caching under `state_dir` (the
  // FileArtifactStore layout). Checks the bucket first, so a wrong endpoint,
  // wrong credentials or a missing bucket fail here, before any step runs.
  // Errors: those of S3Client::CheckBucket.
  static Result<std::unique_ptr<S3ArtifactStore>> Open(S3Options options, const std::string& state_dir);

  // Stores `path` in the local cache, then uploads it unless its object is
  // already in the bucket. The record's uri is s3://bucket/key. Errors: those
  // of FileArtifactStore::Put and of the S3Client requests.
  Result<ArtifactRecord> Put(const std::string& path, ArtifactType type) override;

  // The local cache's path of the artifact, downloaded first when only the
  // bucket has it. Errors: kInvalidArgument (malformed digest), kNotFound
  // (in neither place), kFailedPrecondition ("... does not match its digest"
  // for a corrupted object), and the S3Client request errors.
  Result<std::string> LocalPath(const std::string& digest) override;

  // Through the local cache's digest cache.
  Result<std::string> FileDigest(const std::string& path) override;

  // The local cache's path for the digest (nothing is fetched).
  Result<std::string> CachePath(const std::string& digest) override;

  // One HEAD of the digest's object: its record (uri s3://bucket/key,
  // is_directory from the object's kind) when the bucket has it.
  Result<ArtifactRecord> Stat(const std::string& digest, ArtifactType type, int64_t size) override;

  // GET of the object <prefix>/<name>, at most `limit` bytes.
  Result<std::string> ReadObject(const std::string& name, int64_t limit) override;

  // Stores `bytes` as the object <prefix>/<name> (a launcher's result).
  Status WriteObject(const std::string& name, const std::string& bytes);

  // "s3://bucket/prefix" (or "s3://bucket").
  std::string Location() const override;

  // The shared cache: object <prefix>/cache/<key>.json. Errors: a `key` that
  // is not a hex digest is kInvalidArgument; the S3Client request errors.
  Status PutCacheEntry(const std::string& key, const std::string& json) override;
  Result<std::string> GetCacheEntry(const std::string& key, std::string* where) override;
  // Largest cache entry read.
  static constexpr int64_t kMaxCacheEntryBytes = int64_t{1} << 20;

  // The object key of the artifact with this hex digest.
  std::string KeyFor(const std::string& hex) const;

  S3Client& client() { return client_; }
  FileArtifactStore& cache() { return cache_; }
  // Objects downloaded into the local cache so far; for tests.
  int64_t downloads() const { return downloads_.load(); }

 private:
  S3ArtifactStore(S3Options options, const std::string& state_dir);
  Status Upload(const std::string& local, const ArtifactRecord& rec);
  Status UploadDirectory(const std::string& local, const std::string& hex);
  Status Download(const std::string& hex, const std::string& digest);
  Status DownloadDirectory(const std::string& manifest, const std::string& dir);
  Status DownloadFile(const std::string& key, const std::string& hex, const std::string& path, std::string* kind);

  S3Client client_;
  FileArtifactStore cache_;
  std::atomic<int64_t> downloads_{0};
};

// The artifact store a command uses: `url` "" is the FileArtifactStore of
// `state_dir`; "s3://bucket/prefix" an opened S3ArtifactStore caching there
// (endpoint, region and credentials as in S3OptionsFromEnvironment).
// Errors: kInvalidArgument for another scheme, and those of
// S3OptionsFromEnvironment and S3ArtifactStore::Open.
Result<ArtifactStorePtr> OpenArtifactStore(const std::string& url, const std::string& endpoint,
                                           const std::string& state_dir);

}  // namespace sluice
