#!/usr/bin/env python3
"""Stands in for the kubelet of the test cluster's kwok nodes in ONE namespace.

kwok moves pods through their phases but runs no code, so a pipeline whose
steps pass files to each other cannot run on the test cluster. In namespace
`sluice-host-run` kwok only takes pods to Running (tests/k8s/config/
kwok-stages.yaml.in holds them there); this program watches that namespace and,
for each pod that reaches Running, runs its main container's command as a host
process, then ends the pod the way a kubelet would: status.phase Succeeded or
Failed, every container terminated, the main one with the process's exit code.

The pod's workspace volume (mounted at --mount, default /sluice) is the host
directory --workspace, and /tmp/sluice (where compiled Argo steps leave their
output parameters) is a directory of the pod's own under --scratch, so paths
in the command, env and workingDir are rewritten. For an Argo pod (label
workflows.argoproj.io/workflow) it also does what Argo's `wait` container does:
reads the template's output parameters (env ARGO_TEMPLATE) from their files
and reports them in a WorkflowTaskResult named after the node, before the pod
ends.

It uses kubectl (KUBECONFIG from the environment) and a watch, never polling.
It runs until killed; each pod's output goes to --logs/<pod>.log.

Usage: host_runner.py --workspace DIR --scratch DIR --logs DIR [--namespace NS]
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import threading

NAMESPACE = "sluice-host-run"


def log(msg):
    print(f"[host-runner {datetime.datetime.utcnow():%H:%M:%S}] {msg}", flush=True)


def kubectl(*args, stdin=None):
    r = subprocess.run(["kubectl", "--request-timeout=60s", *args], input=stdin,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {r.stderr.strip()}")
    return r.stdout


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Runner:
    def __init__(self, args):
        self.ns = args.namespace
        self.workspace = os.path.abspath(args.workspace)
        self.scratch = os.path.abspath(args.scratch)
        self.logs = os.path.abspath(args.logs)
        self.mount = args.mount.rstrip("/")
        self.started = set()
        self.lock = threading.Lock()
        self.mount_re = re.compile(r"(?<![\w./-])" + re.escape(self.mount) + r"(?=/|$|\s|\")")

    def rewrite(self, value, tmp_dir):
        value = value.replace("/tmp/sluice", tmp_dir)
        return self.mount_re.sub(self.workspace, value)

    def on_pod(self, pod):
        meta, status = pod["metadata"], pod.get("status", {})
        if status.get("phase") != "Running" or meta.get("deletionTimestamp"):
            return
        # Long-running workloads (a deploy step's Deployment) stay Running, as
        # kwok leaves them everywhere else: only run-to-completion pods run here.
        owners = {o.get("kind") for o in meta.get("ownerReferences", [])}
        if owners & {"ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController"}:
            return
        with self.lock:
            if meta["uid"] in self.started:
                return
            self.started.add(meta["uid"])
        threading.Thread(target=self.run_pod, args=(pod,), daemon=True).start()

    def run_pod(self, pod):
        name = pod["metadata"]["name"]
        try:
            self.run_pod_unsafe(pod)
        except Exception as e:  # a broken pod must not stop the others
            log(f"pod {name}: {e}")
            try:
                self.finish(pod, 1, f"host runner: {e}")
            except Exception as e2:
                log(f"pod {name}: could not end it: {e2}")

    def run_pod_unsafe(self, pod):
        meta, spec = pod["metadata"], pod["spec"]
        name = meta["name"]
        containers = spec["containers"]
        main = next((c for c in containers if c["name"] == "main"), containers[0])
        argv = list(main.get("command", [])) + list(main.get("args", []))
        if argv and argv[0].endswith("argoexec") and "--" in argv:
            argv = argv[argv.index("--") + 1:]  # emissary: the template's own command follows "--"
        tmp_dir = os.path.join(self.scratch, name)
        os.makedirs(tmp_dir, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
        argo_template = None
        for c in containers + spec.get("initContainers", []):
            for e in c.get("env", []):
                if e["name"] == "ARGO_TEMPLATE" and "value" in e:
                    argo_template = json.loads(e["value"])
        for e in main.get("env", []):
            if "valueFrom" not in e:
                env[e["name"]] = self.rewrite(e.get("value", ""), tmp_dir)
        argv = [self.rewrite(a, tmp_dir) for a in argv]
        cwd = self.rewrite(main.get("workingDir", ""), tmp_dir) or tmp_dir
        os.makedirs(cwd, exist_ok=True)
        log(f"pod {name}: running {argv[:3]}... in {cwd}")
        with open(os.path.join(self.logs, name + ".log"), "w") as out:
            rc = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                timeout=900).returncode
        message = ""
        wf = meta.get("labels", {}).get("workflows.argoproj.io/workflow")
        if wf:
            rc, message = self.report_argo_outputs(pod, wf, argo_template or {}, tmp_dir, rc)
        self.finish(pod, rc, message)
        log(f"pod {name}: exit {rc}")

    def report_argo_outputs(self, pod, wf, template, tmp_dir, rc):
        """What Argo's wait container does: a WorkflowTaskResult with the outputs."""
        node_id = pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
        params, message = [], ""
        if rc == 0:
            for p in template.get("outputs", {}).get("parameters", []):
                path = p.get("valueFrom", {}).get("path")
                if not path:
                    continue
                try:
                    with open(self.rewrite(path, tmp_dir)) as f:
                        value = f.read()
                    # As the pod would have written it, with one trailing
                    # newline trimmed, as Argo's executor does.
                    value = value.replace(self.workspace, self.mount)
                    params.append({"name": p["name"], "value": value[:-1] if value.endswith("\n") else value})
                except OSError as e:
                    rc, message = 1, f"output parameter {p['name']}: {e}"
        result = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTaskResult",
            "metadata": {
                "name": node_id,
                "namespace": self.ns,
                "labels": {"workflows.argoproj.io/workflow": wf,
                           "workflows.argoproj.io/report-outputs-completed": "true"},
            },
            "outputs": {"exitCode": str(rc)},
        }
        if params:
            result["outputs"]["parameters"] = params
        kubectl("apply", "-f", "-", stdin=json.dumps(result))
        return rc, message

    def finish(self, pod, rc, message):
        t = now()
        started = pod.get("status", {}).get("startTime", t)

        def terminated(c, code):
            return {"name": c["name"], "image": c["image"], "ready": False, "restartCount": 0,
                    "started": False,
                    "state": {"terminated": {"exitCode": code,
                                             "reason": "Completed" if code == 0 else "Error",
                                             "message": message if code else "",
                                             "startedAt": started, "finishedAt": t}}}
        containers = pod["spec"]["containers"]
        main = next((c for c in containers if c["name"] == "main"), containers[0])
        statuses = [terminated(c, rc if c is main else 0) for c in containers]
        patch = {"status": {
            "phase": "Succeeded" if rc == 0 else "Failed",
            "containerStatuses": statuses,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted",
                            "lastTransitionTime": t},
                           {"type": "ContainersReady", "status": "False", "reason": "PodCompleted",
                            "lastTransitionTime": t}],
        }}
        kubectl("patch", "pod", pod["metadata"]["name"], "-n", self.ns, "--subresource=status",
                "--type=merge", "-p", json.dumps(patch))

    def watch(self):
        proc = subprocess.Popen(["kubectl", "get", "pods", "-n", self.ns, "--watch", "-o", "json"],
                                stdout=subprocess.PIPE, text=True)
        decoder, buf = json.JSONDecoder(), ""
        for line in proc.stdout:
            buf += line
            while True:
                stripped = buf.lstrip()
                if not stripped:
                    buf = ""
                    break
                try:
                    obj, end = decoder.raw_decode(stripped)
                except ValueError:
                    break  # incomplete object: read more
                buf = stripped[end:]
                items = obj.get("items", [obj]) if obj.get("kind") == "List" else [obj]
                for pod in items:
                    self.on_pod(pod)
        return proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--namespace", default=NAMESPACE)
    ap.add_argument("--workspace", required=True, help="host directory of the workspace volume")
    ap.add_argument("--mount", default="/sluice", help="where pods mount the workspace")
    ap.add_argument("--scratch", required=True, help="host directory for each pod's /tmp/sluice")
    ap.add_argument("--logs", required=True, help="directory for the pods' output")
    args = ap.parse_args()
    for d in (args.workspace, args.scratch, args.logs):
        os.makedirs(d, exist_ok=True)
    log(f"watching pods in namespace {args.namespace}")
    sys.exit(Runner(args).watch())


if __name__ == "__main__":
    main()
