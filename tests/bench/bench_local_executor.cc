// bench_local_executor N JOBS DIR: the local executor's own cost per task.
//
// Runs N tasks `/usr/bin/touch DIR/out-exec/nXXXXX` (what gen_dag.py's
// independent shape runs) through LocalExecutor with JOBS slots, keeping the
// slots full, and prints the wall time:
//   tasks=5000 jobs=2 wall_s=3.21 per_task_us=642
// Compare with `ninja -j JOBS` on `gen_dag.py --shape independent --n N`: the
// difference is the floor of sluice's overhead before planning and the store.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "executors/local/local_executor.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s N JOBS DIR\n", argv[0]);
    return 2;
  }
  const int n = std::atoi(argv[1]);
  const int jobs = std::atoi(argv[2]);
  const std::filesystem::path dir = std::filesystem::absolute(argv[3]);
  std::filesystem::remove_all(dir / "out-exec");
  std::filesystem::create_directories(dir / "out-exec");
  std::filesystem::create_directories(dir / "logs");

  sluice::LocalExecutorOptions options;
  options.parallelism = jobs;
  sluice::LocalExecutor executor(options);
  auto start = std::chrono::steady_clock::now();
  int started = 0, finished = 0;
  while (finished < n) {
    while (started < n && executor.CanRunMore()) {
      char name[16];
      std::snprintf(name, sizeof(name), "n%05d", started);
      sluice::Task task;
      task.id = static_cast<sluice::TaskId>(started + 1);
      task.step = name;
      task.instance = name;
      task.argv = {"/usr/bin/touch", (dir / "out-exec" / name).string()};
      task.workdir = dir.string();
      task.log_path = (dir / "logs" / (std::string(name) + ".log")).string();
      sluice::Status st = executor.Start(task);
      if (!st.ok()) {
        std::fprintf(stderr, "start %s: %s\n", name, st.ToString().c_str());
        return 1;
      }
      ++started;
    }
    if (auto r = executor.Wait(std::chrono::seconds(60))) {
      if (r->outcome != sluice::TaskOutcome::kSucceeded) {
        std::fprintf(stderr, "task %llu: %s\n", static_cast<unsigned long long>(r->id),
                     r->message.c_str());
        return 1;
      }
      ++finished;
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("tasks=%d jobs=%d wall_s=%.3f per_task_us=%.0f\n", n, jobs, s, s * 1e6 / n);
  return 0;
}
