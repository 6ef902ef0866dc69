#include "engine/store/s3_artifact_store.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "engine/s3_url.h"
#include "engine/sha256.h"
#include "engine/text.h"

namespace sluice {

namespace {

namespace fs = std::filesystem;

// SHA-256 of no bytes: the payload hash of HEAD and GET requests.
constexpr const char* kEmptyHex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kKindHeader = "x-amz-meta-sluice-kind";

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The text of <Code>...</Code> in an S3 error body, or "".
std::string ErrorCode(const std::string& body) {
  auto b = body.find("<Code>");
  auto e = body.find("</Code>");
  if (b == std::string::npos || e == std::string::npos || e < b) return "";
  return body.substr(b + 6, e - b - 6);
}

// One manifest line: "<kind> <mode> <sha256 or -> <relative path>".
struct ManifestLine {
  char kind = 0;
  std::string mode, hex, rel;
};

// Parses a manifest, refusing paths that would leave the directory.
Result<std::vector<ManifestLine>> ParseManifest(const std::string& text, const std::string& digest) {
  std::vector<ManifestLine> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    ManifestLine m;
    auto s1 = line.find(' '), s2 = line.find(' ', s1 + 1), s3 = line.find(' ', s2 + 1);
    if (line.size() < 2 || line[1] != ' ' || s3 == std::string::npos) {
      return Error(Status::FailedPrecondition("the manifest of directory artifact " + digest +
                                              " has a malformed line: " + line));
    }
    m.kind = line[0];
    m.mode = line.substr(s1 + 1, s2 - s1 - 1);
    m.hex = line.substr(s2 + 1, s3 - s2 - 1);
    m.rel = line.substr(s3 + 1);
    fs::path rel(m.rel);
    bool escapes = rel.is_absolute() || m.rel.empty();
    for (const auto& part : rel) escapes = escapes || part == ".." || part == ".";
    const bool known_kind = m.kind == 'd' || m.kind == 'f' || m.kind == 'l';
    if (escapes || !known_kind || (m.kind != 'd' && !FileArtifactStore::IsHexDigest(m.hex))) {
      return Error(Status::FailedPrecondition("the manifest of directory artifact " + digest +
                                              " has an invalid entry: " + line));
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Options

Status ParseS3Url(const std::string& url, S3Options* options) {
  auto loc = ParseS3Location(url);
  if (!loc) return loc.error();
  options->bucket = loc->bucket;
  options->prefix = loc->prefix;
  return Status::Ok();
}

Result<S3Options> S3OptionsFrom(const std::string& url, const std::string& endpoint, const EnvLookup& env) {
  S3Options o;
  SLUICE_RETURN_IF_ERROR_RESULT(ParseS3Url(url, &o));
  auto aws = ResolveAwsSettings(env);
  if (!aws) return Error(aws.error());
  o.region = aws->region;
  o.endpoint = !endpoint.empty()       ? endpoint
               : !aws->endpoint.empty() ? aws->endpoint
                                        : "https://s3." + o.region + ".amazonaws.com";
  while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
  if (o.endpoint.rfind("https://", 0) != 0 && o.endpoint.rfind("http://", 0) != 0) {
    const std::string from = !endpoint.empty() ? "--artifacts-endpoint" : aws->endpoint_from;
    return Error(Status::InvalidArgument("S3 endpoint '" + o.endpoint + "' (from " + from +
                                         ") is not an http:// or https:// URL"));
  }
  o.access_key = aws->access_key;
  o.secret_key = aws->secret_key;
  o.session_token = aws->session_token;
  o.credentials_from = aws->credentials_from;
  o.ca_bundle = aws->ca_bundle;
  if (o.access_key.empty() || o.secret_key.empty()) {
    return Error(Status::InvalidArgument(
        "--artifacts " + url + ": no credentials for the S3 endpoint " + o.endpoint +
        ": set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key "
        "in the profile (AWS_PROFILE, default 'default') of ~/.aws/credentials"));
  }
  return o;
}

Result<S3Options> S3OptionsFromEnvironment(const std::string& url, const std::string& endpoint) {
  return S3OptionsFrom(url, endpoint, [](const std::string& name) { return Env(name.c_str()); });
}

// ---------------------------------------------------------------------------
// S3Client

// One request: what to send, where the answer goes. The body comes from
// `in_fd` (streamed) or `in_bytes`; a 2xx answer's body goes to `out_fd`
// (hashed into `out_hash`) or `out_bytes` (at most `out_limit` bytes).
struct S3Client::Request {
  std::string method;  // GET, PUT, HEAD, POST, DELETE
  std::string key;     // "" = the bucket itself
  std::string query;   // after '?', parameters in sorted order (SigV4's canonical form); "" = none
  std::string payload_hex = kEmptyHex;
  std::string kind;    // x-amz-meta-sluice-kind to send; "" = none
  int in_fd = -1;
  int64_t in_start = 0;   // where in in_fd the body starts (a part of a file)
  const std::string* in_bytes = nullptr;
  int64_t in_size = 0;
  int64_t in_offset = 0;  // progress in the body
  int out_fd = -1;
  std::unique_ptr<Sha256> out_hash;
  std::string* out_bytes = nullptr;
  int64_t out_limit = 0;
  bool too_large = false;
  Status write_error;
  // Filled from the answer.
  std::string got_kind;
  std::string etag;
  std::string error_body;
  CURL* curl = nullptr;
};

namespace {

size_t ReadBody(char* buf, size_t size, size_t n, void* userdata) {
  auto* r = static_cast<S3Client::Request*>(userdata);
  size_t want = size * n;
  if (r->in_bytes) {
    size_t left = r->in_bytes->size() - static_cast<size_t>(r->in_offset);
    size_t k = std::min(want, left);
    std::memcpy(buf, r->in_bytes->data() + r->in_offset, k);
    r->in_offset += static_cast<int64_t>(k);
    return k;
  }
  want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(want), r->in_size - r->in_offset));
  if (want == 0) return 0;
  for (;;) {
    ssize_t got = ::pread(r->in_fd, buf, want, r->in_start + r->in_offset);
    if (got > 0) {
      r->in_offset += got;
      return static_cast<size_t>(got);
    }
    // A file that shrank under the upload: abort rather than send short.
    if (got == 0 || errno != EINTR) return CURL_READFUNC_ABORT;
  }
}

size_t WriteBody(char* data, size_t size, size_t n, void* userdata) {
  auto* r = static_cast<S3Client::Request*>(userdata);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300) {  // an error document: keep its start
    if (r->error_body.size() < 4096) r->error_body.append(data, std::min<size_t>(len, 4096));
    return len;
  }
  if (r->out_bytes) {
    if (static_cast<int64_t>(r->out_bytes->size() + len) > r->out_limit) {
      r->too_large = true;
      return 0;
    }
    r->out_bytes->append(data, len);
    return len;
  }
  if (r->out_fd < 0) return len;
  r->out_hash->Update(data, len);
  for (size_t off = 0; off < len;) {
    ssize_t w = ::write(r->out_fd, data + off, len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      r->write_error = Status::FailedPrecondition(std::string("cannot write a download: ") + std::strerror(errno));
      return 0;
    }
    off += static_cast<size_t>(w);
  }
  return len;
}

size_t ReadHeader(char* data, size_t size, size_t n, void* userdata) {
  auto* r = static_cast<S3Client::Request*>(userdata);
  std::string line(data, size * n);
  if (line.size() > 5 && strncasecmp(line.c_str(), "etag:", 5) == 0) {
    std::string v = line.substr(5);
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t\r\n") + 1);
    r->etag = v;
  }
  const std::string name = std::string(kKindHeader) + ":";
  if (line.size() > name.size() && strncasecmp(line.c_str(), name.c_str(), name.size()) == 0) {
    std::string v = line.substr(name.size());
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t\r\n") + 1);
    r->got_kind = v;
  }
  return size * n;
}

bool Retryable(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_COULDNT_RESOLVE_HOST:
      return true;
    default:
      return false;
  }
}

}  // namespace

S3Client::S3Client(S3Options options) : options_(std::move(options)) { GlobalInit(); }

std::string S3Client::Url(const std::string& key) const {
  return "s3://" + options_.bucket + (key.empty() ? "" : "/" + key);
}

// One attempt: *http_status 0 and *curl_error set when no answer came.
Status S3Client::Attempt(Request& r, long* http_status, std::string* curl_error) {
  requests_.fetch_add(1);
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Status::Internal("cannot start an HTTP request (curl_easy_init failed)");
  CURL* c = curl.get();
  r.curl = c;
  std::string url = options_.endpoint + "/" + options_.bucket + (r.key.empty() ? "" : "/" + r.key) +
                    (r.query.empty() ? "" : "?" + r.query);
  std::string sigv4 = "aws:amz:" + options_.region + ":s3";
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("x-amz-content-sha256: " + r.payload_hex).c_str());
  // (No "Expect:" to turn off 100-continue: curl 7.88 signs the empty header
  // and servers then reject the signature.)
  if (!r.kind.empty()) headers = curl_slist_append(headers, (std::string(kKindHeader) + ": " + r.kind).c_str());
  // curl signs every header it is given: the token is covered by the signature.
  if (!options_.session_token.empty())
    headers = curl_slist_append(headers, ("x-amz-security-token: " + options_.session_token).c_str());
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_list(headers, curl_slist_free_all);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERNAME, options_.access_key.c_str());
  curl_easy_setopt(c, CURLOPT_PASSWORD, options_.secret_key.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (!options_.ca_bundle.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_bundle.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ReadHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  if (r.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (r.method == "POST" || r.method == "DELETE") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (r.in_bytes) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.in_bytes->data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.in_bytes->size()));
    }
  } else if (r.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &r);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.in_size));
  }
  CURLcode code = curl_easy_perform(c);
  r.curl = nullptr;
  *http_status = 0;
  if (!r.write_error.ok()) return r.write_error;
  if (r.too_large) {
    return Status::FailedPrecondition("object " + Url(r.key) + " is larger than " + std::to_string(r.out_limit) +
                                      " bytes");
  }
  if (code != CURLE_OK) {
    *curl_error = curl_easy_strerror(code);  // fixed text: no timings, no credentials
    return Retryable(code) ? Status::Unavailable(*curl_error) : Status::Internal(*curl_error);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_status);
  return Status::Ok();
}

// Rewinds a request's body and answer for another attempt.
static Status Rewind(S3Client::Request& r) {
  r.in_offset = 0;
  r.error_body.clear();
  r.got_kind.clear();
  r.etag.clear();
  if (r.out_fd >= 0) {
    if (::ftruncate(r.out_fd, 0) != 0 || ::lseek(r.out_fd, 0, SEEK_SET) != 0) {
      return Status::FailedPrecondition(std::string("cannot rewind a download: ") + std::strerror(errno));
    }
    r.out_hash = std::make_unique<Sha256>();
  }
  if (r.out_bytes) r.out_bytes->clear();
  return Status::Ok();
}

Status S3Client::Perform(Request& r) {
  const std::string what = r.method + " " + Url(r.key);
  long status = 0;
  std::string curl_error;
  int attempt = 1;
  for (;; ++attempt) {
    SLUICE_RETURN_IF_ERROR(Rewind(r));
    curl_error.clear();
    Status st = Attempt(r, &status, &curl_error);
    if (!st.ok() && st.code() != StatusCode::kUnavailable) {
      if (curl_error.empty()) return st;
      return Status::Unavailable("S3 endpoint " + options_.endpoint + ": " + what + " failed: " + curl_error);
    }
    bool again = !st.ok() || status == 429 || status >= 500;
    if (!again || attempt >= options_.max_attempts) break;
    std::this_thread::sleep_for(options_.first_backoff * (1 << (attempt - 1)));
  }
  const std::string tries = " (after " + std::to_string(attempt) + " attempt" + (attempt == 1 ? "" : "s") + ")";
  if (!curl_error.empty()) {
    return Status::Unavailable("cannot reach the S3 endpoint " + options_.endpoint + ": " + curl_error + tries);
  }
  if (status >= 200 && status < 300) return Status::Ok();
  std::string code = ErrorCode(r.error_body);
  std::string detail = "HTTP " + std::to_string(status) + (code.empty() ? "" : " " + code);
  if (status == 403) {
    const std::string& from = options_.credentials_from;
    const std::string check = from.empty() || from == "environment"
                                  ? "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                                  : "aws_access_key_id and aws_secret_access_key in " + from;
    return Status::PermissionDenied("the S3 endpoint " + options_.endpoint + " refused the credentials for " + what +
                                    " (" + detail + "): check " + check + " and the bucket's policy");
  }
  if (status == 404) return Status::NotFound(what + ": " + detail);
  if (status == 429 || status >= 500) {
    return Status::Unavailable("the S3 endpoint " + options_.endpoint + " answered " + detail + " to " + what + tries);
  }
  return Status::FailedPrecondition("the S3 endpoint " + options_.endpoint + " answered " + detail + " to " + what);
}

Status S3Client::CheckBucket() {
  Request r;
  r.method = "HEAD";
  Status st = Perform(r);
  if (st.code() == StatusCode::kNotFound) {
    return Status::NotFound("bucket '" + options_.bucket + "' does not exist at the S3 endpoint " + options_.endpoint);
  }
  return st;
}

Status S3Client::CreateBucket() {
  Request r;
  r.method = "PUT";
  std::string empty;
  r.in_bytes = &empty;
  Status st = Perform(r);
  if (!st.ok() && ErrorCode(r.error_body) == "BucketAlreadyOwnedByYou") return Status::Ok();
  return st;
}

Result<bool> S3Client::Exists(const std::string& key, std::string* kind) {
  Request r;
  r.method = "HEAD";
  r.key = key;
  Status st = Perform(r);
  if (st.code() == StatusCode::kNotFound) return false;
  if (!st.ok()) return Error(st);
  if (kind) *kind = r.got_kind;
  return true;
}

Status S3Client::PutBytes(const std::string& key, const std::string& bytes, const std::string& hex,
                          const std::string& kind) {
  Request r;
  r.method = "PUT";
  r.key = key;
  r.payload_hex = hex;
  r.kind = kind;
  r.in_bytes = &bytes;
  r.in_size = static_cast<int64_t>(bytes.size());
  SLUICE_RETURN_IF_ERROR(Perform(r));
  uploads_.fetch_add(1);
  return Status::Ok();
}

Status S3Client::PutFile(const std::string& key, const std::string& path, int64_t size, const std::string& hex,
                         const std::string& kind) {
  if (size > S3ArtifactStore::kMaxObjectBytes) {
    return Status::FailedPrecondition(path + " is " + std::to_string(size) + " bytes; an S3 object is at most " +
                                      std::to_string(S3ArtifactStore::kMaxObjectBytes) + " bytes (5 TiB)");
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FailedPrecondition("cannot read " + path + ": " + std::strerror(errno));
  Status st;
  if (size > options_.part_bytes) {
    st = PutMultipart(key, fd, size, kind);
  } else {
    Request r;
    r.method = "PUT";
    r.key = key;
    r.payload_hex = hex;
    r.kind = kind;
    r.in_fd = fd;
    r.in_size = size;
    st = Perform(r);
  }
  ::close(fd);
  if (st.ok()) uploads_.fetch_add(1);
  return st;
}

namespace {

// The text of <Tag>...</Tag> in an S3 XML answer, or "".
std::string XmlText(const std::string& body, const std::string& tag) {
  auto b = body.find("<" + tag + ">");
  auto e = body.find("</" + tag + ">");
  if (b == std::string::npos || e == std::string::npos || e < b) return "";
  return body.substr(b + tag.size() + 2, e - b - tag.size() - 2);
}

// SHA-256 hex of `len` bytes of `fd` from `start`, read in 1 MiB pieces.
Result<std::string> HashRange(int fd, int64_t start, int64_t len) {
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  for (int64_t done = 0; done < len;) {
    ssize_t got = ::pread(fd, buf.data(), static_cast<size_t>(std::min<int64_t>(len - done, buf.size())), start + done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return Error(Status::FailedPrecondition(std::string("cannot read an upload: ") +
                                                          (got == 0 ? "the file shrank" : std::strerror(errno))));
    hash.Update(buf.data(), static_cast<size_t>(got));
    done += got;
  }
  return hash.HexDigest();
}

}  // namespace

// Initiate, parts, complete; abort when anything fails, so the bucket keeps
// no orphaned parts.
Status S3Client::PutMultipart(const std::string& key, int fd, int64_t size, const std::string& kind) {
  std::string answer;
  Request init;
  init.method = "POST";
  init.key = key;
  init.query = "uploads=";
  init.kind = kind;
  std::string empty;
  init.in_bytes = &empty;
  init.out_bytes = &answer;
  init.out_limit = 1 << 16;
  SLUICE_RETURN_IF_ERROR(Perform(init));
  const std::string upload_id = XmlText(answer, "UploadId");
  if (upload_id.empty()) {
    return Status::FailedPrecondition("the S3 endpoint " + options_.endpoint + " started no multipart upload for " +
                                      Url(key) + " (no UploadId in its answer)");
  }
  std::string parts_xml;
  Status st = UploadParts(key, upload_id, fd, size, &parts_xml);
  if (st.ok()) {
    std::string body = "<CompleteMultipartUpload>" + parts_xml + "</CompleteMultipartUpload>";
    Request done;
    done.method = "POST";
    done.key = key;
    done.query = "uploadId=" + UrlEncode(upload_id);
    done.payload_hex = Sha256Hex(body);
    done.in_bytes = &body;
    answer.clear();
    done.out_bytes = &answer;
    done.out_limit = 1 << 16;
    st = Perform(done);
    // S3 may answer 200 and then report a failure in the body.
    if (st.ok() && answer.find("<Error>") != std::string::npos) {
      st = Status::Unavailable("the S3 endpoint " + options_.endpoint + " could not complete the upload of " + Url(key) +
                               ": " + XmlText(answer, "Code"));
    }
  }
  if (!st.ok()) {
    Request abort;
    abort.method = "DELETE";
    abort.key = key;
    abort.query = "uploadId=" + UrlEncode(upload_id);
    (void)Perform(abort);  // best effort: the upload's own error is the one to report
  }
  return st;
}

Status S3Client::UploadParts(const std::string& key, const std::string& upload_id, int fd, int64_t size,
                             std::string* parts_xml) {
  // At most kMaxParts parts: a file that would need more gets larger parts.
  int64_t part = std::max(options_.part_bytes, S3ArtifactStore::kMinPartBytes);
  part = std::max(part, (size + S3ArtifactStore::kMaxParts - 1) / S3ArtifactStore::kMaxParts);
  int number = 1;
  for (int64_t start = 0; start < size; start += part, ++number) {
    const int64_t len = std::min(part, size - start);
    auto hex = HashRange(fd, start, len);
    if (!hex) return hex.error();
    Request r;
    r.method = "PUT";
    r.key = key;
    r.query = "partNumber=" + std::to_string(number) + "&uploadId=" + UrlEncode(upload_id);
    r.payload_hex = *hex;
    r.in_fd = fd;
    r.in_start = start;
    r.in_size = len;
    SLUICE_RETURN_IF_ERROR(Perform(r));
    if (r.etag.empty()) {
      return Status::FailedPrecondition("the S3 endpoint " + options_.endpoint + " returned no ETag for part " +
                                        std::to_string(number) + " of " + Url(key));
    }
    *parts_xml += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" + r.etag + "</ETag></Part>";
  }
  return Status::Ok();
}

Result<std::string> S3Client::GetFile(const std::string& key, const std::string& path, std::string* kind) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error(Status::FailedPrecondition("cannot create " + path + ": " + std::strerror(errno)));
  Request r;
  r.method = "GET";
  r.key = key;
  r.out_fd = fd;
  r.out_hash = std::make_unique<Sha256>();
  Status st = Perform(r);
  if (::close(fd) != 0 && st.ok()) st = Status::FailedPrecondition("cannot write " + path + ": " + std::strerror(errno));
  if (!st.ok()) {
    ::unlink(path.c_str());
    return Error(st);
  }
  if (kind) *kind = r.got_kind;
  return r.out_hash->HexDigest();
}

Result<std::string> S3Client::GetBytes(const std::string& key, int64_t limit) {
  std::string bytes;
  Request r;
  r.method = "GET";
  r.key = key;
  r.out_bytes = &bytes;
  r.out_limit = limit;
  SLUICE_RETURN_IF_ERROR_RESULT(Perform(r));
  return bytes;
}

// ---------------------------------------------------------------------------
// S3ArtifactStore

S3ArtifactStore::S3ArtifactStore(S3Options options, const std::string& state_dir)
    : client_(std::move(options)), cache_(state_dir) {}

Result<std::unique_ptr<S3ArtifactStore>> S3ArtifactStore::Open(S3Options options, const std::string& state_dir) {
  std::unique_ptr<S3ArtifactStore> store(new S3ArtifactStore(std::move(options), state_dir));
  SLUICE_RETURN_IF_ERROR_RESULT(store->client_.CheckBucket());
  return store;
}

std::string S3ArtifactStore::KeyFor(const std::string& hex) const {
  const std::string& prefix = client_.options().prefix;
  return (prefix.empty() ? "" : prefix + "/") + "cas/sha256/" + hex.substr(0, 2) + "/" + hex;
}

Result<std::string> S3ArtifactStore::FileDigest(const std::string& path) { return cache_.FileDigest(path); }

std::string S3ArtifactStore::Location() const { return client_.Url(client_.options().prefix); }

namespace {

// A cache key names an object: only the digests sluice makes are taken.
bool IsCacheKey(const std::string& key) {
  return !key.empty() && key.size() <= 128 &&
         std::all_of(key.begin(), key.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

Status S3ArtifactStore::PutCacheEntry(const std::string& key, const std::string& json) {
  if (!IsCacheKey(key)) return Status::InvalidArgument("'" + key + "' is not a cache key");
  const std::string& prefix = client_.options().prefix;
  return client_.PutBytes((prefix.empty() ? "" : prefix + "/") + "cache/" + key + ".json", json, Sha256Hex(json),
                          "cache");
}

Result<std::string> S3ArtifactStore::GetCacheEntry(const std::string& key, std::string* where) {
  if (!IsCacheKey(key)) return Error(Status::InvalidArgument("'" + key + "' is not a cache key"));
  const std::string& prefix = client_.options().prefix;
  const std::string object = (prefix.empty() ? "" : prefix + "/") + "cache/" + key + ".json";
  if (where) *where = client_.Url(object);
  return client_.GetBytes(object, kMaxCacheEntryBytes);
}

Result<ArtifactRecord> S3ArtifactStore::Put(const std::string& path, ArtifactType type) {
  auto rec = cache_.Put(path, type);
  if (!rec) return rec;
  std::string hex = rec->digest.substr(7);
  auto local = cache_.LocalPath(rec->digest);
  if (!local) return Error(local.error());
  auto there = client_.Exists(KeyFor(hex));
  if (!there) return Error(there.error());
  if (!*there) SLUICE_RETURN_IF_ERROR_RESULT(Upload(*local, *rec));
  rec->uri = client_.Url(KeyFor(hex));
  return rec;
}

Status S3ArtifactStore::Upload(const std::string& local, const ArtifactRecord& rec) {
  std::string hex = rec.digest.substr(7);
  if (rec.is_directory) return UploadDirectory(local, hex);
  struct stat st;
  if (::stat(local.c_str(), &st) != 0) return Status::FailedPrecondition("cannot stat " + local);
  return client_.PutFile(KeyFor(hex), local, st.st_size, hex, (st.st_mode & S_IXUSR) ? "exec" : "file");
}

Status S3ArtifactStore::UploadDirectory(const std::string& local, const std::string& hex) {
  auto manifest = FileArtifactStore::ManifestOf(local, &cache_.digest_cache());
  if (!manifest) return manifest.error();
  auto lines = ParseManifest(*manifest, "sha256:" + hex);
  if (!lines) return lines.error();
  for (const ManifestLine& m : *lines) {
    if (m.kind == 'd') continue;
    auto there = client_.Exists(KeyFor(m.hex));
    if (!there) return there.error();
    if (*there) continue;
    std::string path = local + "/" + m.rel;
    if (m.kind == 'l') {
      std::error_code ec;
      std::string target = fs::read_symlink(path, ec).string();
      if (ec) return Status::FailedPrecondition("cannot read link " + path);
      SLUICE_RETURN_IF_ERROR(client_.PutBytes(KeyFor(m.hex), target, m.hex, "link"));
      continue;
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return Status::FailedPrecondition("cannot stat " + path);
    SLUICE_RETURN_IF_ERROR(client_.PutFile(KeyFor(m.hex), path, st.st_size, m.hex, "file"));
  }
  // Last: the manifest's presence says the whole directory is there.
  return client_.PutBytes(KeyFor(hex), *manifest, hex, "manifest");
}

Result<std::string> S3ArtifactStore::CachePath(const std::string& digest) { return cache_.CachePath(digest); }

Result<ArtifactRecord> S3ArtifactStore::Stat(const std::string& digest, ArtifactType type, int64_t size) {
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  if (!FileArtifactStore::IsHexDigest(hex)) {
    return Error(Status::InvalidArgument("'" + digest + "' is not a sha256 digest (expected sha256:<64 hex>)"));
  }
  std::string kind;
  auto there = client_.Exists(KeyFor(hex), &kind);
  if (!there) return Error(there.error());
  if (!*there) return Error(Status::NotFound("artifact sha256:" + hex + " is not at " + client_.Url(KeyFor(hex))));
  ArtifactRecord r;
  r.digest = "sha256:" + hex;
  r.uri = client_.Url(KeyFor(hex));
  r.type = type;
  r.size = size;
  r.is_directory = kind == "manifest";
  return r;
}

namespace {

std::string ObjectKey(const S3Options& o, const std::string& name) {
  return o.prefix.empty() ? name : o.prefix + "/" + name;
}

}  // namespace

Result<std::string> S3ArtifactStore::ReadObject(const std::string& name, int64_t limit) {
  return client_.GetBytes(ObjectKey(client_.options(), name), limit);
}

Status S3ArtifactStore::WriteObject(const std::string& name, const std::string& bytes) {
  return client_.PutBytes(ObjectKey(client_.options(), name), bytes, Sha256Hex(bytes), "");
}

Result<std::string> S3ArtifactStore::LocalPath(const std::string& digest) {
  auto local = cache_.LocalPath(digest);
  if (local || local.error().code() != StatusCode::kNotFound) return local;
  std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
  Status st = Download(hex, "sha256:" + hex);
  if (st.code() == StatusCode::kNotFound) {
    return Error(Status::NotFound("artifact sha256:" + hex + " is neither in the local store nor at " +
                                  client_.Url(KeyFor(hex)) + " (its bytes were removed)"));
  }
  if (!st.ok()) return Error(st);
  return cache_.LocalPath(digest);
}

Status S3ArtifactStore::DownloadFile(const std::string& key, const std::string& hex, const std::string& path,
                                     std::string* kind) {
  auto got = client_.GetFile(key, path, kind);
  if (!got) return got.error();
  downloads_.fetch_add(1);
  if (*got != hex) {
    ::unlink(path.c_str());
    return Status::FailedPrecondition("artifact sha256:" + hex + " downloaded from " + client_.Url(key) +
                                      " does not match its digest (the bytes hash to sha256:" + *got +
                                      "): the object was corrupted or replaced");
  }
  return Status::Ok();
}

Status S3ArtifactStore::Download(const std::string& hex, const std::string& digest) {
  auto tmp = cache_.NewTempPath();
  if (!tmp) return tmp.error();
  std::string kind;
  SLUICE_RETURN_IF_ERROR(DownloadFile(KeyFor(hex), hex, *tmp, &kind));
  if (kind != "manifest") {
    if (::chmod(tmp->c_str(), kind == "exec" ? 0555 : 0444) != 0) {
      ::unlink(tmp->c_str());
      return Status::FailedPrecondition("cannot chmod " + *tmp + ": " + std::strerror(errno));
    }
    return cache_.Adopt(*tmp, hex, false);
  }
  // A directory: its manifest names the objects of its entries.
  std::string manifest_path = *tmp;
  auto dir = cache_.NewTempPath();
  if (!dir) return dir.error();
  std::string manifest;
  {
    std::error_code ec;
    if (fs::file_size(manifest_path, ec) > static_cast<uintmax_t>(kMaxManifestBytes) || ec) {
      fs::remove(manifest_path, ec);
      return Status::FailedPrecondition("the manifest of directory artifact " + digest + " is too large or unreadable");
    }
    std::ifstream in(manifest_path, std::ios::binary);
    manifest.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    fs::remove(manifest_path, ec);
  }
  Status st = DownloadDirectory(manifest, *dir);
  if (st.ok()) {
    // The tree built must be the one the digest names (modes included).
    auto again = FileArtifactStore::ManifestOf(*dir);
    if (!again) st = again.error();
    else if (*again != manifest) st = Status::FailedPrecondition("directory artifact " + digest +
                                                                  " downloaded from the bucket does not match its manifest");
  }
  if (!st.ok()) {
    std::error_code ec;
    fs::remove_all(*dir, ec);
    return st;
  }
  return cache_.Adopt(*dir, hex, true);
}

Status S3ArtifactStore::DownloadDirectory(const std::string& manifest, const std::string& dir) {
  std::string hex = Sha256Hex(manifest);
  auto lines = ParseManifest(manifest, "sha256:" + hex);
  if (!lines) return lines.error();
  std::error_code ec;
  if (!fs::create_directory(dir, ec)) return Status::FailedPrecondition("cannot create " + dir + ": " + ec.message());
  for (const ManifestLine& m : *lines) {
    std::string path = dir + "/" + m.rel;
    if (m.kind == 'd') {
      if (!fs::create_directory(path, ec)) return Status::FailedPrecondition("cannot create " + path);
      continue;
    }
    if (m.kind == 'l') {
      auto target = client_.GetBytes(KeyFor(m.hex), 1 << 16);
      if (!target) return target.error();
      downloads_.fetch_add(1);
      if (Sha256Hex(*target) != m.hex) {
        return Status::FailedPrecondition("link object " + client_.Url(KeyFor(m.hex)) + " of directory artifact sha256:" +
                                          hex + " does not match its digest sha256:" + m.hex);
      }
      fs::create_symlink(*target, path, ec);
      if (ec) return Status::FailedPrecondition("cannot create link " + path);
      continue;
    }
    SLUICE_RETURN_IF_ERROR(DownloadFile(KeyFor(m.hex), m.hex, path, nullptr));
    if (::chmod(path.c_str(), m.mode == "755" ? 0555 : 0444) != 0) {
      return Status::FailedPrecondition("cannot chmod " + path + ": " + std::strerror(errno));
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------

Result<ArtifactStorePtr> OpenArtifactStore(const std::string& url, const std::string& endpoint,
                                           const std::string& state_dir) {
  if (url.empty()) return ArtifactStorePtr(std::make_unique<FileArtifactStore>(state_dir));
  if (url.rfind("s3://", 0) != 0) {
    return Error(Status::InvalidArgument("--artifacts " + url +
                                         ": expected s3://bucket/prefix (the default store needs no flag)"));
  }
  auto options = S3OptionsFromEnvironment(url, endpoint);
  if (!options) return Error(options.error());
  auto store = S3ArtifactStore::Open(std::move(*options), state_dir);
  if (!store) return Error(store.error());
  return ArtifactStorePtr(std::move(*store));
}

}  // namespace sluice
