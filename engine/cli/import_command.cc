// `sluice import-run WORKFLOW`: a finished Argo Workflow (compiled by
// `sluice compile --target argo`) into the store; see
// engine/compile/argo_import.h for the mapping.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>

#include "engine/store/artifact_store.h"
#include "engine/cli/commands.h"
#include "engine/cli/output.h"
#include "engine/compile/argo_import.h"
#include "dsl/notebook.h"
#include "engine/run_id.h"
#include "engine/sha256.h"
#include "engine/store/open_store.h"
#include "engine/text.h"
#include "executors/kubernetes/api/client.h"
#include "executors/kubernetes/api/kubeconfig.h"

namespace sluice::cli {
namespace {

namespace fs = std::filesystem;

const k8s::ResourceKind kWorkflowKind{"argoproj.io/v1alpha1", "Workflow", "workflows", true};

const k8s::ResourceKind kPodKind{"v1", "Pod", "pods", true};

// The cluster the workflow was read from, kept to copy its pods' logs.
struct Cluster {
  std::unique_ptr<k8s::Client> client;
  std::string ns;
};

// The workflow, from a file (tests, offline use) or from the cluster (then
// `cluster` keeps the client).
Result<Json> FetchWorkflow(const ImportRunOptions& o, std::string* where, Cluster* cluster) {
  if (!o.from_file.empty()) {
    std::ifstream in(o.from_file);
    if (!in) return Error(Status::NotFound("cannot read " + o.from_file));
    std::stringstream ss;
    ss << in.rdbuf();
    Json wf = Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
    if (wf.is_discarded())
      return Error(Status::InvalidArgument(o.from_file + ": not JSON (write it with kubectl get workflow NAME -o json)"));
    *where = o.from_file;
    return wf;
  }
  k8s::KubeconfigOptions ko;
  ko.kubeconfig = o.kubeconfig;
  ko.context = o.context;
  ko.namespace_ = o.namespace_;
  if (const char* env = std::getenv("KUBECONFIG")) ko.kubeconfig_env = env;
  if (const char* home = std::getenv("HOME")) ko.home = home;
  if (const char* host = std::getenv("KUBERNETES_SERVICE_HOST")) ko.service_host = host;
  if (const char* port = std::getenv("KUBERNETES_SERVICE_PORT")) ko.service_port = port;
  auto config = k8s::LoadRestConfig(ko);
  if (!config) return Error(config.error());
  auto client = k8s::Client::Create(*config, k8s::ClientOptions{});
  if (!client) return Error(client.error());
  std::string ns = !o.namespace_.empty() ? o.namespace_ : config->namespace_;
  if (ns.empty()) ns = "default";
  *where = "workflow " + ns + "/" + o.workflow;
  auto wf = (*client)->Get(kWorkflowKind, ns, o.workflow);
  if (!wf && wf.error().code() == StatusCode::kNotFound)
    return Error(Status::NotFound("no Argo Workflow " + o.workflow + " in namespace " + ns +
                                  " (kubectl get workflows -n " + ns + " lists them; --namespace picks another)"));
  cluster->client = std::move(*client);
  cluster->ns = ns;
  return wf;
}

// Pod nodes at or under `id` in the Workflow's status.nodes, in order.
void PodNodes(const Json& nodes, const std::string& id, std::vector<std::string>* out) {
  if (!nodes.contains(id)) return;
  const Json& node = nodes[id];
  if (node.value("type", "") == "Pod") {
    out->push_back(id);
    return;
  }
  for (const auto& c : node.value("children", Json::array()))
    if (c.is_string()) PodNodes(nodes, c.get<std::string>(), out);
}

// Copies each attempt's pod logs (pods/log, container main) into the store's
// log location, as the Kubernetes executor does for its own runs:
// <state>/runs/<run>/logs/<instance>.attempt<N>.log. An attempt that is a DAG
// (a training job's or a deploy's) gets the logs of every pod under it, each
// under a "==> pod NAME <==" line. Pods that are gone are counted in *gone.
void CopyPodLogs(Cluster& cluster, const Json& wf, const std::string& state_dir, const std::string& run_id,
                 std::vector<compile::ImportedExecution>& executions, int* copied, int* gone) {
  const std::string wf_name = wf["metadata"].value("name", "");
  auto pods = cluster.client->List(kPodKind, cluster.ns, "workflows.argoproj.io/workflow=" + wf_name);
  if (!pods) {
    std::cerr << "sluice: warning: cannot list the pods of workflow " << wf_name << " to copy their logs: "
              << pods.error().message() << "\n";
    return;
  }
  std::map<std::string, std::string> pod_of_node;
  for (const auto& p : pods->items) {
    const Json meta = p.value("metadata", Json::object());
    std::string node = meta.value("annotations", Json::object()).value("workflows.argoproj.io/node-id", "");
    if (!node.empty()) pod_of_node[node] = meta.value("name", "");
  }
  const Json nodes = wf.value("status", Json::object()).value("nodes", Json::object());
  const fs::path dir = fs::path(state_dir) / "runs" / run_id / "logs";
  for (auto& e : executions) {
    std::vector<std::string> pod_nodes;
    PodNodes(nodes, e.record.snapshot.value("node", ""), &pod_nodes);
    std::string text;
    int found = 0;
    for (const auto& n : pod_nodes) {
      auto pod = pod_of_node.find(n);
      if (pod == pod_of_node.end()) {
        ++*gone;
        continue;
      }
      auto log = cluster.client->GetText("/api/v1/namespaces/" + UrlEncode(cluster.ns) + "/pods/" +
                                         UrlEncode(pod->second) + "/log?container=main");
      if (!log) {
        ++*gone;
        std::cerr << "sluice: warning: logs of pod " << cluster.ns << "/" << pod->second << ": "
                  << log.error().message() << "\n";
        continue;
      }
      ++found;
      if (pod_nodes.size() > 1) text += "==> pod " + pod->second + " <==\n";
      text += *log;
      if (!log->empty() && log->back() != '\n') text += "\n";
    }
    if (found == 0) continue;
    std::error_code ec;
    fs::create_directories(dir, ec);
    const std::string path = (dir / (e.record.instance + ".attempt" + std::to_string(e.record.attempt) + ".log")).string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) {
      std::cerr << "sluice: warning: cannot write " << path << "\n";
      continue;
    }
    e.record.log_path = path;
    *copied += found;
  }
}

// Where this host sees a path of the workspace volume; "" when it cannot.
std::string HostPath(const ImportRunOptions& o, const std::string& pod_path) {
  if (o.workspace_host_dir.empty()) return "";
  std::string mount = o.workspace_mount;
  while (mount.size() > 1 && mount.back() == '/') mount.pop_back();
  if (pod_path != mount && pod_path.rfind(mount + "/", 0) != 0) return "";
  return (fs::path(o.workspace_host_dir) / pod_path.substr(std::min(pod_path.size(), mount.size() + 1)))
      .string();
}

}  // namespace

int ImportRun(const ImportRunOptions& options) {
  std::string where;
  Cluster cluster;
  auto wf = FetchWorkflow(options, &where, &cluster);
  if (!wf) {
    PrintError(wf.error().message());
    return ExitCodeFor(wf.error());
  }
  auto imported = compile::ImportArgoWorkflow(*wf);
  if (!imported) {
    PrintError(where + ": " + imported.error().message());
    return ExitCodeFor(imported.error());
  }
  RunRecord& run = imported->run;
  if (!options.run_id.empty()) run.id = options.run_id;
  // The id names <store>/runs/<id>/logs, where pod logs are copied.
  if (Status s = ValidateRunId(run.id); !s.ok()) {
    PrintError((options.run_id.empty() ? "the Workflow's name is not a run id: " : "--run-id: ") +
               s.message() + (options.run_id.empty() ? "; import it under another id with --run-id" : ""));
    return kExitUsage;
  }
  if (!options.file.empty()) {
    std::ifstream in(options.file);
    if (!in) {
      PrintError("--file: cannot read " + options.file);
      return kExitUsage;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    run.pipeline_yaml = ss.str();
    run.pipeline_file = fs::absolute(options.file).lexically_normal().string();
    std::string digest = Sha256Hex(run.pipeline_yaml);
    if (!run.pipeline_digest.empty() && digest != run.pipeline_digest)
      std::cerr << "sluice: warning: " << options.file << " (sha256:" << digest.substr(0, 12)
                << ") is not the file the workflow was compiled from (sha256:"
                << run.pipeline_digest.substr(0, 12) << ")\n";
  }

  const std::string state_dir = ResolveStateDir(options.store);
  auto store = OpenStore(StoreLocation(options.store));
  if (!store) {
    PrintError(store.error().message());
    return ExitCodeFor(store.error());
  }
  if (auto existing = (*store)->GetRun(run.id); existing && existing->id == run.id) {
    PrintError("run " + run.id + " is already in the store " + state_dir +
               "; import it under another id with --run-id");
    return kExitUsage;
  }
  FileArtifactStore artifacts(state_dir);
  int digested = 0, missing = 0;
  // Digests a pod path where this host sees the workspace; nullopt otherwise.
  auto bind = [&](const compile::ImportedArtifact& a) -> std::optional<ArtifactBinding> {
    std::string host = HostPath(options, a.path);
    if (host.empty()) return std::nullopt;
    auto record = artifacts.Put(host, a.type);
    if (!record) {
      ++missing;
      std::cerr << "sluice: warning: artifact " << a.name << " at " << a.path << " (" << host
                << "): " << record.error().message() << "\n";
      return std::nullopt;
    }
    ++digested;
    return ArtifactBinding{a.name, *record};
  };

  int logs_copied = 0, logs_gone = 0;
  if (cluster.client)
    CopyPodLogs(cluster, *wf, state_dir, run.id, imported->executions, &logs_copied, &logs_gone);
  if (Status s = (*store)->CreateRun(run); !s.ok()) {
    PrintError(s.message());
    return ExitCodeFor(s);
  }
  std::map<std::string, StepRecord*> by_instance;
  for (auto& step : imported->steps) {
    step.run_id = run.id;
    by_instance[step.instance] = &step;
  }
  for (auto& e : imported->executions) {
    e.record.run_id = run.id;
    std::vector<ArtifactBinding> inputs, outputs;
    for (const auto& a : e.inputs)
      if (auto b = bind(a)) inputs.push_back(*b);
    for (const auto& a : e.outputs)
      if (auto b = bind(a)) outputs.push_back(*b);
    Json paths = Json::object();
    for (const auto& a : e.outputs) paths[a.name] = a.path;
    e.record.snapshot["output_artifact_paths"] = paths;
    auto id = (*store)->StartExecution(e.record);
    if (!id) {
      PrintError(id.error().message());
      return kExitSystem;
    }
    e.record.id = *id;
    if (Status s = (*store)->FinishExecution(e.record, inputs, outputs); !s.ok()) {
      PrintError(s.message());
      return kExitSystem;
    }
    if (StepRecord* step = by_instance[e.record.instance]) {
      step->log_path = e.record.log_path;  // the latest attempt's (executions come in attempt order)
      step->inputs = inputs;
      if (!outputs.empty()) step->outputs = outputs;
    }
  }
  for (const auto& step : imported->steps) {
    if (Status s = (*store)->PutStep(step); !s.ok()) {
      PrintError(s.message());
      return kExitSystem;
    }
  }
  std::cout << "imported " << where << " as run " << run.id << " (" << RunPhaseName(run.phase) << ", "
            << imported->steps.size() << " step instance" << (imported->steps.size() == 1 ? "" : "s")
            << ", " << imported->executions.size() << " attempt"
            << (imported->executions.size() == 1 ? "" : "s");
  if (!options.workspace_host_dir.empty())
    std::cout << ", " << digested << " artifact" << (digested == 1 ? "" : "s") << " digested";
  if (cluster.client) {
    std::cout << ", " << logs_copied << " pod log" << (logs_copied == 1 ? "" : "s") << " copied";
    if (logs_gone > 0) std::cout << " (" << logs_gone << " pod" << (logs_gone == 1 ? "" : "s") << " gone)";
  }
  std::cout << ")\n";
  if (options.workspace_host_dir.empty())
    std::cout << "artifacts not digested (no --workspace-host-dir): lineage shows steps and params only\n";
  return missing > 0 ? kExitFailed : kExitOk;
}

namespace {

Dispatch RegisterImportRunCommand(CLI::App& app);

struct ImportNotebookOptions {
  std::string notebook;
  std::string out_dir;
  std::string name;
  std::string image;
  bool force = false;
};

// `sluice import notebook FILE.ipynb -o DIR`: the pipeline and its step
// scripts (dsl/notebook.h), written into DIR.
int ImportNotebookCommand(const ImportNotebookOptions& o) {
  std::ifstream in(o.notebook, std::ios::binary);
  if (!in) {
    PrintError("cannot read " + o.notebook + ": " + ErrnoText(errno));
    return kExitUsage;
  }
  std::string text;
  char chunk[64 * 1024];
  while (text.size() <= dsl::kMaxNotebookBytes && in.read(chunk, sizeof chunk).gcount() > 0)
    text.append(chunk, static_cast<size_t>(in.gcount()));
  auto imported = dsl::ImportNotebook(text, o.notebook, {o.name, o.image});
  if (!imported) {
    PrintError(imported.error().message());
    return ExitCodeFor(imported.error());
  }
  const fs::path dir(o.out_dir);
  std::error_code ec;
  if (!o.force && fs::exists(dir / "pipeline.yaml", ec)) {
    PrintError((dir / "pipeline.yaml").string() + " exists; pass --force to replace it");
    return kExitUsage;
  }
  for (const auto& [rel, content] : imported->files) {
    const fs::path path = dir / rel;
    fs::create_directories(path.parent_path(), ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (ec || !out) {
      PrintError("cannot write " + path.string() + (ec ? ": " + ec.message() : ""));
      return kExitSystem;
    }
  }
  std::cout << "wrote " << (dir / "pipeline.yaml").string() << " and " << imported->steps.size() << " step script"
            << (imported->steps.size() == 1 ? "" : "s") << " (" << Join(imported->steps, ", ") << ")";
  if (!imported->params.empty()) std::cout << "; params: " << Join(imported->params, ", ");
  std::cout << "\nrun it: sluice run " << (dir / "pipeline.yaml").string() << "\n";
  return kExitOk;
}

}  // namespace

Dispatch RegisterImportCommand(CLI::App& app) {
  auto notebook = std::make_shared<ImportNotebookOptions>();
  auto* import_group = app.add_subcommand("import", "Turn something else into a sluice pipeline");
  import_group->require_subcommand(1);
  auto* notebook_cmd = import_group->add_subcommand(
      "notebook", "A Jupyter notebook whose cells are tagged step:NAME, after:NAME, param, imports, functions, metrics, skip");
  notebook_cmd->add_option("NOTEBOOK", notebook->notebook, "The .ipynb file")->required();
  notebook_cmd->add_option("-o,--output", notebook->out_dir, "Directory for pipeline.yaml and steps/")->required();
  notebook_cmd->add_option("--name", notebook->name, "The pipeline's name (default: from the file name)");
  notebook_cmd->add_option("--image", notebook->image, "The steps' image on Kubernetes (defaults.image)");
  notebook_cmd->add_flag("--force", notebook->force, "Replace an existing pipeline.yaml and step scripts");
  auto import_run_dispatch = RegisterImportRunCommand(app);
  return [notebook, notebook_cmd, import_run_dispatch]() -> std::optional<int> {
    if (*notebook_cmd) return ImportNotebookCommand(*notebook);
    return import_run_dispatch();
  };
}

namespace {

Dispatch RegisterImportRunCommand(CLI::App& app) {
  auto import_run = std::make_shared<ImportRunOptions>();
  auto* import_cmd = app.add_subcommand(
      "import-run", "Read a finished Argo Workflow (from sluice compile --target argo) into the store as a run");
  import_cmd->add_option("WORKFLOW", import_run->workflow, "Workflow name")->required();
  import_cmd->add_option("-n,--namespace", import_run->namespace_, "Namespace of the Workflow (default: the context's)");
  import_cmd->add_option("--kubeconfig", import_run->kubeconfig, "Kubeconfig file");
  import_cmd->add_option("--context", import_run->context, "Kubeconfig context (default: current-context)");
  import_cmd->add_option("--from-file", import_run->from_file,
                         "Read the Workflow from FILE (kubectl get workflow NAME -o json) instead of the cluster");
  import_cmd->add_option("--store", import_run->store, kStoreFlagHelp);
  import_cmd->add_option("--run-id", import_run->run_id, "Id of the imported run (default: the Workflow's name)");
  import_cmd->add_option("--file", import_run->file, "The pipeline file it was compiled from, recorded with the run");
  import_cmd->add_option("--workspace-host-dir", import_run->workspace_host_dir,
                         "Where this host sees the workspace volume: artifacts are digested into the store for lineage");
  import_cmd->add_option("--workspace-mount", import_run->workspace_mount,
                         "Where the pods mounted the workspace volume (default /sluice)");

  return [import_run, import_cmd]() -> std::optional<int> {
    if (!*import_cmd) return std::nullopt;
    return ImportRun(*import_run);
  };
}

}  // namespace

}  // namespace sluice::cli
