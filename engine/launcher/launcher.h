#pragma once
// sluice-launcher: the program that runs a step inside a pod when artifacts
// move through object storage (engine/launch.h has the contract with the
// host; docs/kubernetes.md the pod it runs in).
//
//   install DIR          copies this program, every shared library it has
//                        loaded and the dynamic loader into DIR, so that
//                          DIR/ld.so --library-path DIR/lib DIR/sluice-launcher ...
//                        runs in any image of the same architecture (an init
//                        container runs it from the sluice image into an
//                        emptyDir the step's container mounts).
//   run                  does what the LaunchSpec in $SLUICE_LAUNCH says:
//                        fetches the inputs and the code by digest, runs the
//                        step's argv (fork + execvp, never a shell; its
//                        output goes to the container's log; SIGTERM and
//                        SIGINT are passed on), then on exit 0 stores the
//                        declared outputs and writes the LaunchResult.
//   fetch DIGEST DEST    fetches one artifact into DEST (a model server's
//                        init container); the store is $SLUICE_ARTIFACTS
//                        (s3://bucket/prefix) at $SLUICE_ARTIFACTS_ENDPOINT.
// Credentials come from the environment (S3OptionsFromEnvironment).

#include <string>

#include "engine/launch.h"
#include "engine/status.h"

namespace sluice::launcher {

// Exit code of `run` when the launcher itself fails before the step could
// run (store unreachable, an input missing or corrupted, a bad spec).
inline constexpr int kLaunchFailed = 125;

// `install DIR`. Errors: kFailedPrecondition naming the file that could not
// be read or written, or the loader that could not be found.
Status Install(const std::string& dir);

// `run` for `spec`: returns the exit code the launcher exits with (the
// step's; 128+N when a signal N ended it; 1 when the step exited 0 but an
// output could not be stored or read; kLaunchFailed when nothing ran).
// Writes what went wrong to stderr.
int Run(const LaunchSpec& spec);

// `fetch DIGEST DEST`: the artifact's verified bytes copied to `dest` (a
// file, or a directory tree). Errors: those of S3ArtifactStore::LocalPath,
// and kFailedPrecondition when `dest` cannot be written.
Status Fetch(const std::string& url, const std::string& endpoint, const std::string& cache_dir,
             const std::string& digest, const std::string& dest);

}  // namespace sluice::launcher
