#pragma once
// Where the Kubernetes API server is and how to authenticate to it, read the
// way kubectl reads it.
//
// Loading rules (client-go's clientcmd, which kubectl uses):
//   1. an explicit path (`--kubeconfig`): exactly that file, which must exist;
//   2. else `$KUBECONFIG`: a colon-separated list of files, merged so that the
//      FIRST file to define a cluster, user or context (or current-context)
//      wins; files that do not exist are skipped;
//   3. else `~/.kube/config`;
//   4. else, when running in a pod, the in-cluster service account.
// Then the context (`--context`, else current-context) picks a cluster and a
// user, and the context's namespace (overridden by `--namespace`) is the
// default namespace ("default" when unset).
//
// Relative paths inside a kubeconfig file (certificate-authority,
// client-certificate, client-key, tokenFile, an exec command containing '/')
// are relative to the directory of the file that named them.
//
// yaml-cpp is called only from kubeconfig.cc, which turns its exceptions into
// Status values naming the file.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/base64.h"
#include "engine/status.h"

namespace sluice::k8s {

// `users[].user.exec`: a credential plugin speaking the
// client.authentication.k8s.io ExecCredential protocol (v1 or v1beta1).
struct ExecConfig {
  std::string api_version;  // client.authentication.k8s.io/v1 or /v1beta1
  std::string command;      // absolute, or resolved through PATH at run time
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // added to ours
  std::string install_hint;                              // shown when the command is missing
  bool provide_cluster_info = false;
  std::string interactive_mode;  // Never | IfAvailable | Always; sluice never is interactive
};

// `clusters[].cluster`.
struct ClusterConfig {
  std::string name;
  std::string server;               // https://host:port (http:// only for tests)
  std::string ca_pem;               // certificate-authority(-data) content, PEM
  std::string ca_source;            // where ca_pem came from, for messages
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;      // overrides the name checked in the certificate
};

// `users[].user`. At most one way of authenticating is used, in this order:
// client certificate (may combine with a token), token, tokenFile, exec.
struct UserConfig {
  std::string name;
  std::string token;
  std::string token_file;       // absolute; re-read when it changes (rotation)
  std::string client_cert_pem;  // client-certificate(-data) content
  std::string client_key_pem;   // client-key(-data) content
  std::string username, password;  // basic auth (rare; kept for completeness)
  std::optional<ExecConfig> exec;
};

// Everything needed to talk to one API server as one user.
struct RestConfig {
  std::string context;     // context name ("" for in-cluster)
  std::string namespace_;  // default namespace for namespaced calls
  ClusterConfig cluster;
  UserConfig user;
  std::string source;      // "kubeconfig a.yaml:b.yaml" or "in-cluster service account"
  bool in_cluster = false;
};

// How to find the kubeconfig. Environment-derived fields are optional so tests
// can pin them; nullopt means "read the process environment".
struct KubeconfigOptions {
  std::string kubeconfig;   // --kubeconfig; "" = not given
  std::string context;      // --context; "" = current-context
  std::string namespace_;   // --namespace; "" = the context's
  std::optional<std::string> kubeconfig_env;  // $KUBECONFIG
  std::optional<std::string> home;            // $HOME
  // In-cluster discovery (used only when no kubeconfig file is found).
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::optional<std::string> service_host;  // $KUBERNETES_SERVICE_HOST
  std::optional<std::string> service_port;  // $KUBERNETES_SERVICE_PORT
};

// Loads the configuration following the rules above. Errors:
//   kNotFound            no kubeconfig anywhere and not in a cluster; an
//                        explicit --kubeconfig file that does not exist; a
//                        context/cluster/user name that is not defined (with
//                        "did you mean" when a close name exists);
//   kInvalidArgument     a file that is not valid kubeconfig YAML (file:line:col),
//                        bad base64, a missing server;
//   kFailedPrecondition  a referenced certificate/key/token file is unreadable.
// Logs a loud warning when insecure-skip-tls-verify is set.
Result<RestConfig> LoadRestConfig(const KubeconfigOptions& options);

// The in-cluster configuration (service account token, CA and namespace, and
// KUBERNETES_SERVICE_HOST/PORT). kNotFound when not running in a pod.
Result<RestConfig> LoadInClusterConfig(const KubeconfigOptions& options);

// Credentials for one request, from whichever source the user has.
struct Credentials {
  std::string token;            // bearer token, "" if none
  std::string client_cert_pem;  // "" if none
  std::string client_key_pem;
  std::string username, password;
  // When these credentials stop being valid (exec plugins); nullopt = no expiry.
  std::optional<std::chrono::system_clock::time_point> expiry;
};

// Bounds on one run of an exec credential plugin. A plugin that has not
// exited `timeout` after it started, or that prints more than `max_output`
// bytes, is stopped: its whole process group gets SIGKILL.
struct ExecPluginLimits {
  std::chrono::milliseconds timeout{30000};
  size_t max_output = 1 << 20;
};

// Stops every exec credential plugin running now (their process groups get
// SIGKILL; the Get() waiting for each returns kCancelled at once), and every
// one the process would start later (Get() returns kCancelled without
// running it; cached credentials are still returned). For a process that is
// shutting down (SIGTERM, Ctrl-C). Thread-safe; there is no undoing it.
void InterruptExecPlugins();

// Produces Credentials for a UserConfig: static ones as they are, tokenFile
// re-read when older than a minute, exec plugins run (argv, never a shell)
// and their result cached until its expirationTimestamp. Thread-safe.
class CredentialSource {
 public:
  // Copies `config`; `cluster` is sent to exec plugins that asked for
  // provideClusterInfo; `limits` bound each plugin run.
  CredentialSource(UserConfig user, ClusterConfig cluster, ExecPluginLimits limits = {});

  // Current credentials. `refresh` forces an exec plugin to run again (after
  // a 401). Errors: kUnauthenticated when a plugin fails or prints garbage
  // (its stderr is passed through to ours), kDeadlineExceeded when it runs
  // past limits.timeout, kUnauthenticated when it prints more than
  // limits.max_output, kCancelled when InterruptExecPlugins() stopped it,
  // kFailedPrecondition when a token file is unreadable, kNotFound when the
  // plugin command is missing (with the installHint).
  Result<Credentials> Get(bool refresh = false);

  // Number of times an exec plugin has been run (for tests of the cache).
  int exec_runs() const;

 private:
  Result<Credentials> RunExecPlugin();

  const UserConfig user_;
  const ClusterConfig cluster_;
  const ExecPluginLimits limits_;
  mutable std::mutex mu_;
  std::optional<Credentials> cached_;
  std::chrono::steady_clock::time_point token_file_read_at_{};
  int exec_runs_ = 0;
};

// Parses an ExecCredential JSON document printed by a plugin; exposed for
// tests. `expected_api_version` is the one the kubeconfig asked for.
Result<Credentials> ParseExecCredential(const std::string& json_text,
                                        const std::string& expected_api_version);

// Standard base64 (RFC 4648, with padding); the one in the engine core.
using sluice::Base64Encode;

// The closest of `candidates` to `name` by edit distance, "" when none is
// close enough to suggest ("did you mean ...").
std::string ClosestName(const std::string& name, const std::vector<std::string>& candidates);

// An RFC 3339 time as the API server writes it ("2026-11-25T18:42:01Z",
// fractional seconds and "+hh:mm" offsets accepted); nullopt when malformed.
// Times past 2100 are capped there, times before 1970 taken as 1970.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& s);

}  // namespace sluice::k8s
