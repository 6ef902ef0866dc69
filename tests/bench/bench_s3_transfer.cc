// One file through S3ArtifactStore and back: `bench_s3_transfer up|down`.
//
//   up FILE STATE_DIR URL     Put FILE (into STATE_DIR's local cache, then
//                             the bucket of URL, s3://bucket/prefix)
//   down DIGEST STATE_DIR URL LocalPath of DIGEST from an empty cache:
//                             streamed from the bucket and verified
//
// Endpoint and credentials as for `sluice run --artifacts` (the AWS
// settings). Prints seconds, MiB/s and the process's peak resident set
// (getrusage ru_maxrss). A benchmark, not a test: tests/bench/s3_transfer.sh
// runs it beside `aws s3 cp` (docs/performance.md).

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "engine/store/s3_artifact_store.h"

using namespace sluice;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: bench_s3_transfer up FILE STATE_DIR s3://B/P | down DIGEST STATE_DIR s3://B/P\n");
    return 2;
  }
  const std::string mode = argv[1], what = argv[2], state = argv[3], url = argv[4];
  auto options = S3OptionsFromEnvironment(url, "");
  if (!options) {
    std::fprintf(stderr, "%s\n", options.error().message().c_str());
    return 1;
  }
  auto store = S3ArtifactStore::Open(*options, state);
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().message().c_str());
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  std::string result, path;
  if (mode == "up") {
    auto rec = (*store)->Put(what, ArtifactType::kDataset);
    if (!rec) {
      std::fprintf(stderr, "%s\n", rec.error().message().c_str());
      return 1;
    }
    result = rec->digest;
    path = what;
  } else {
    auto local = (*store)->LocalPath(what);
    if (!local) {
      std::fprintf(stderr, "%s\n", local.error().message().c_str());
      return 1;
    }
    result = *local;
    path = *local;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double mib = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
  std::printf("%s %s: %.2f s, %.0f MiB/s, peak RSS %.1f MiB\n", mode.c_str(), result.c_str(), s, mib / s,
              ru.ru_maxrss / 1024.0);
  return 0;
}
