#pragma once
// The pod of a task that runs through sluice-launcher (engine/launch.h):
// artifacts and code move through object storage, with no volume shared
// with the host. Used by the shared pod code (manifests.h: Container and
// PodTemplate) when UsesLauncher() is true; every other pod is unchanged.
//
// Such a pod gets
//   - emptyDir volumes sluice-bin (the launcher, its libraries and loader)
//     and sluice-work, mounted at /sluice: the launcher's artifact cache
//     (/sluice/store), the step's working directory (/sluice/work) and its
//     code (/sluice/code);
//   - an init container sluice-install (KubernetesObjectStorage's launcher
//     image) running `<launcher_path> install /sluice-bin`;
//   - as the main container's command
//       /sluice-bin/ld.so --library-path /sluice-bin/lib /sluice-bin/sluice-launcher run
//     with the LaunchSpec as JSON in env SLUICE_LAUNCH, and the credentials
//     Secret's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as secretKeyRefs.
// Host paths in the step's argv, env and inputs are rewritten to the pod's
// (PodPaths): the step's workdir -> /sluice/work, the host's artifact store
// root -> /sluice/store, the code's host directory -> /sluice/code.

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/executor.h"
#include "engine/operator.h"
#include "engine/status.h"

namespace sluice::operators {

// Where a launcher pod keeps things.
inline constexpr char kLauncherBinDir[] = "/sluice-bin";
inline constexpr char kLauncherWorkRoot[] = "/sluice";

// True when `task` runs through the launcher: object storage is configured
// and the runner gave the task its files.
bool UsesLauncher(const Task& task, const KubernetesObjectOptions& o);

// Host path prefixes and the pod paths they become, longest first: the
// launcher's (when UsesLauncher) and the shared workspace's
// (host_workspace_root -> workspace_mount_path).
std::vector<std::pair<std::string, std::string>> PodPaths(const Task& task, const KubernetesObjectOptions& o);

// `value` with every whole-path-component occurrence of a host prefix of
// `paths` replaced by its pod path.
std::string ToPodPath(const std::vector<std::pair<std::string, std::string>>& paths, std::string value);

// A container env entry `name` read from key `name` of Secret `secret`.
nlohmann::json SecretEnv(const std::string& name, const std::string& secret);

// Turns the main container `c` (command already in pod paths) into the
// launcher's: command, SLUICE_LAUNCH, credentials, mounts.
void AddLauncher(const Task& task, const KubernetesObjectOptions& o,
                 const std::vector<std::pair<std::string, std::string>>& paths, nlohmann::json* c);

// Adds the launcher's volumes and init container to a pod spec.
void AddLauncherVolumes(const KubernetesObjectOptions& o, nlohmann::json* pod_spec);

}  // namespace sluice::operators
