// bench_yaml_load FILE [REPS]: the baseline for the parse+lint benchmark.
//
// Loads FILE with yaml-cpp REPS times (default 1) and prints the number of
// entries under `steps:` and the fastest load in milliseconds:
//   steps=10000 best_ms=123.4
// No validation, no spec building: the cost floor any YAML front end pays.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <yaml-cpp/yaml.h>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s FILE [REPS]\n", argv[0]);
    return 2;
  }
  int reps = argc == 3 ? std::atoi(argv[2]) : 1;
  if (reps < 1) reps = 1;
  double best_ms = 1e300;
  size_t steps = 0;
  for (int i = 0; i < reps; ++i) {
    auto start = std::chrono::steady_clock::now();
    try {
      YAML::Node root = YAML::LoadFile(argv[1]);
      steps = root["steps"] ? root["steps"].size() : 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", argv[1], e.what());
      return 1;
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (ms < best_ms) best_ms = ms;
  }
  std::printf("steps=%zu best_ms=%.1f\n", steps, best_ms);
  return 0;
}
