// sluice-launcher's command line (engine/launcher/launcher.h).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/launcher/launcher.h"

namespace {

const char kUsage[] =
    "usage: sluice-launcher --version\n"
    "       sluice-launcher install DIR\n"
    "       sluice-launcher run                  (the step in $SLUICE_LAUNCH)\n"
    "       sluice-launcher fetch DIGEST DEST    (store: $SLUICE_ARTIFACTS, $SLUICE_ARTIFACTS_ENDPOINT)\n";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

int Fail(const sluice::Status& st) {
  std::fprintf(stderr, "sluice-launcher: %s\n", st.message().c_str());
  return sluice::launcher::kLaunchFailed;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "--version" && argc == 2) {
    std::printf("sluice-launcher %s\n", SLUICE_VERSION);
    return 0;
  }
  if (cmd == "install" && argc == 3) {
    sluice::Status st = sluice::launcher::Install(argv[2]);
    return st.ok() ? 0 : Fail(st);
  }
  if (cmd == "run" && argc == 2) {
    std::string text = Env("SLUICE_LAUNCH");
    if (text.empty()) return Fail(sluice::Status::InvalidArgument("$SLUICE_LAUNCH is not set"));
    auto spec = sluice::LaunchSpecFromJson(text);
    if (!spec) return Fail(spec.error());
    return sluice::launcher::Run(*spec);
  }
  if (cmd == "fetch" && argc == 4) {
    std::string cache = Env("SLUICE_ARTIFACTS_CACHE");
    sluice::Status st = sluice::launcher::Fetch(Env("SLUICE_ARTIFACTS"), Env("SLUICE_ARTIFACTS_ENDPOINT"),
                                                cache.empty() ? "/tmp/sluice-artifacts" : cache, argv[2], argv[3]);
    return st.ok() ? 0 : Fail(st);
  }
  std::fputs(kUsage, stderr);
  return 2;
}
