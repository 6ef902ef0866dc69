#include "engine/launcher/launcher.h"

#include <elf.h>
#include <link.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "engine/step_outputs.h"
#include "engine/store/s3_artifact_store.h"
#include "engine/text.h"

namespace sluice::launcher {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// install

struct LoadedObjects {
  std::string program;               // "" when the main object has no name
  std::string interpreter;           // the main object's PT_INTERP
  std::vector<std::string> libraries;
};

int CollectObject(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<LoadedObjects*>(data);
  const std::string name = info->dlpi_name ? info->dlpi_name : "";
  bool main_object = out->interpreter.empty() && out->program.empty() && out->libraries.empty();
  if (main_object) {
    out->program = name.empty() ? "/proc/self/exe" : name;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      if (info->dlpi_phdr[i].p_type == PT_INTERP) {
        out->interpreter = reinterpret_cast<const char*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
      }
    }
    if (out->interpreter.empty()) out->interpreter = "-";  // static: no loader
    return 0;
  }
  // The vDSO has no file; everything else with a path is a shared library.
  if (!name.empty() && name[0] == '/') out->libraries.push_back(name);
  return 0;
}

Status CopyExecutable(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::remove(to, ec);
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return Status::FailedPrecondition("cannot copy " + from + " to " + to + ": " + ec.message());
  fs::permissions(to, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec, ec);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// run

volatile sig_atomic_t g_child = 0;

void Forward(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

void WriteTermination(const std::string& path, const std::string& text) {
  if (path.empty() || text.size() > kTerminationMessageLimit) return;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Puts the verified bytes of `digest` (from the store's cache) at `path`:
// nothing to do when that is the cache's own path, else a symbolic link.
Status Place(S3ArtifactStore& store, const std::string& digest, const std::string& path) {
  auto local = store.LocalPath(digest);
  if (!local) return local.error();
  if (path.empty() || fs::path(path).lexically_normal() == fs::path(*local).lexically_normal()) return Status::Ok();
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  fs::remove_all(path, ec);
  fs::create_symlink(*local, path, ec);
  if (ec) return Status::FailedPrecondition("cannot link " + path + " to " + *local + ": " + ec.message());
  return Status::Ok();
}

// A copy of the tree at `from` (files, directories, symlinks) at `to`.
Status CopyTree(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks |
                         fs::copy_options::overwrite_existing, ec);
  if (ec) return Status::FailedPrecondition("cannot copy " + from + " to " + to + ": " + ec.message());
  return Status::Ok();
}

Result<std::unique_ptr<S3ArtifactStore>> OpenStore(const std::string& url, const std::string& endpoint,
                                                   const std::string& region, const std::string& cache_dir) {
  auto options = S3OptionsFromEnvironment(url, endpoint);
  if (!options) return Error(options.error());
  if (!region.empty()) options->region = region;
  return S3ArtifactStore::Open(std::move(*options), cache_dir);
}

// Fetches the inputs and the code. Errors name the input.
Status Prepare(const LaunchSpec& spec, S3ArtifactStore& store) {
  for (const auto& in : spec.inputs) {
    Status st = Place(store, in.digest, in.path);
    if (!st.ok()) return st.WithContext("step '" + spec.step + "': input '" + in.name + "'");
  }
  if (!spec.code_digest.empty()) {
    auto code = store.LocalPath(spec.code_digest);
    if (!code) return code.error().WithContext("step '" + spec.step + "': code " + spec.code_digest);
    SLUICE_RETURN_IF_ERROR(CopyTree(*code, spec.code_dir));
  }
  std::error_code ec;
  fs::create_directories(spec.workdir, ec);
  if (ec) return Status::FailedPrecondition("cannot create the working directory " + spec.workdir + ": " + ec.message());
  return Status::Ok();
}

// Runs argv in the workdir and returns its exit code (128+N for signal N).
Result<int> RunStep(const LaunchSpec& spec) {
  std::vector<char*> args;
  for (const auto& a : spec.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  struct sigaction sa = {};
  sa.sa_handler = Forward;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Error(Status::Internal("fork: " + ErrnoText(errno)));
  if (pid == 0) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::sigaction(SIGINT, &dfl, nullptr);
    ::unsetenv("SLUICE_LAUNCH");
    if (::chdir(spec.workdir.c_str()) != 0) {
      std::fprintf(stderr, "sluice-launcher: cannot enter %s: %s\n", spec.workdir.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "sluice-launcher: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  g_child = pid;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Error(Status::Internal("waitpid: " + ErrnoText(errno)));
  }
  g_child = 0;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Stores the declared outputs and reads params and metrics into *result.
Status CollectOutputs(const LaunchSpec& spec, S3ArtifactStore& store, LaunchResult* result) {
  std::error_code ec;
  for (const auto& out : spec.outputs) {
    fs::path p = fs::path(spec.workdir) / out.path;
    if (!fs::exists(p, ec)) return Status::FailedPrecondition(MissingArtifactMessage(spec.step, out.name, out.path));
    auto rec = store.Put(p.string(), out.type);
    if (!rec) return rec.error().WithContext("step '" + spec.step + "': storing output artifact '" + out.name + "'");
    result->outputs[out.name] = LaunchOutput{rec->digest, out.type, rec->size, rec->is_directory};
  }
  for (const auto& p : spec.params) {
    auto v = ReadOutputParam(spec.step, spec.workdir, p.name, p.path);
    if (!v) return v.error();
    result->params[p.name] = *v;
  }
  if (!spec.metrics_file.empty()) {
    auto m = ReadMetricsFile(spec.step, spec.workdir, spec.metrics_file);
    if (!m) return m.error();
    result->metrics = std::move(*m);
  }
  return Status::Ok();
}

// A pod of a distributed step that does not report: it gets the inputs and
// the code, runs the step and exits with its code; the reporting pod stores
// the outputs and the result.
int RunWithoutReport(const LaunchSpec& spec) {
  auto store = OpenStore(spec.store_url, spec.store_endpoint, spec.store_region, spec.cache_dir);
  Status prepared = store ? Prepare(spec, **store) : store.error();
  if (!prepared.ok()) {
    std::fprintf(stderr, "sluice-launcher: %s\n", prepared.message().c_str());
    return kLaunchFailed;
  }
  auto code = RunStep(spec);
  if (!code) {
    std::fprintf(stderr, "sluice-launcher: %s\n", code.error().message().c_str());
    return kLaunchFailed;
  }
  return *code;
}

}  // namespace

Status Install(const std::string& dir) {
  LoadedObjects objects;
  ::dl_iterate_phdr(CollectObject, &objects);
  if (objects.interpreter.empty() || objects.interpreter == "-") {
    return Status::FailedPrecondition("sluice-launcher is not dynamically linked: nothing to install but itself");
  }
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "lib", ec);
  if (ec) return Status::FailedPrecondition("cannot create " + dir + "/lib: " + ec.message());
  // When started through a loader (`ld.so sluice-launcher install`), the
  // main object is named by the path it was given.
  SLUICE_RETURN_IF_ERROR(CopyExecutable(objects.program, dir + "/sluice-launcher"));
  SLUICE_RETURN_IF_ERROR(CopyExecutable(objects.interpreter, dir + "/ld.so"));
  for (const auto& lib : objects.libraries) {
    if (fs::equivalent(lib, objects.interpreter, ec)) continue;
    SLUICE_RETURN_IF_ERROR(CopyExecutable(lib, dir + "/lib/" + fs::path(lib).filename().string()));
  }
  return Status::Ok();
}

int Run(const LaunchSpec& spec) {
  if (!LaunchReports(spec, [](const char* name) { return std::getenv(name); })) return RunWithoutReport(spec);
  LaunchResult result;
  auto finish = [&](int code) {
    const std::string text = LaunchResultToJson(result).dump();
    WriteTermination(spec.termination_log, text);
    return code;
  };
  auto fail = [&](const Status& st) {
    std::fprintf(stderr, "sluice-launcher: %s\n", st.message().c_str());
    result.error = st.message();
  };
  auto store = OpenStore(spec.store_url, spec.store_endpoint, spec.store_region, spec.cache_dir);
  if (!store) {
    fail(store.error());
    return finish(kLaunchFailed);
  }
  auto write_result = [&] {
    Status st = (*store)->WriteObject(spec.result_key, LaunchResultToJson(result).dump());
    if (!st.ok()) std::fprintf(stderr, "sluice-launcher: storing the result: %s\n", st.message().c_str());
    return st;
  };
  Status prepared = Prepare(spec, **store);
  if (!prepared.ok()) {
    fail(prepared);
    write_result();
    return finish(kLaunchFailed);
  }
  auto code = RunStep(spec);
  if (!code) {
    fail(code.error());
    write_result();
    return finish(kLaunchFailed);
  }
  result.exit_code = *code;
  int exit_code = *code;
  if (*code == 0) {
    Status collected = CollectOutputs(spec, **store, &result);
    if (!collected.ok()) {
      fail(collected);
      result.outputs.clear();
      exit_code = 1;
    }
  }
  if (!write_result().ok() && exit_code == 0) exit_code = 1;
  return finish(exit_code);
}

Status Fetch(const std::string& url, const std::string& endpoint, const std::string& cache_dir,
             const std::string& digest, const std::string& dest) {
  if (url.empty()) return Status::InvalidArgument("set $SLUICE_ARTIFACTS to the store (s3://bucket/prefix)");
  auto store = OpenStore(url, endpoint, "", cache_dir);
  if (!store) return store.error();
  auto local = (*store)->LocalPath(digest);
  if (!local) return local.error();
  std::error_code ec;
  if (fs::is_directory(*local, ec)) return CopyTree(*local, dest);
  if (fs::path(dest).has_parent_path()) fs::create_directories(fs::path(dest).parent_path(), ec);
  fs::copy_file(*local, dest, fs::copy_options::overwrite_existing, ec);
  if (ec) return Status::FailedPrecondition("cannot copy " + *local + " to " + dest + ": " + ec.message());
  return Status::Ok();
}

}  // namespace sluice::launcher
