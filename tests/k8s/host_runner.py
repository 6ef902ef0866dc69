#!/usr/bin/env python3
"""Stands in for the kubelet of the test cluster's kwok nodes in ONE namespace.

kwok moves pods through their phases but runs no code, so a pipeline whose
steps pass files to each other cannot run on the test cluster. In namespace
`sluice-host-run` kwok only takes pods to Running (tests/k8s/config/
kwok-stages.yaml.in holds them there); this program watches that namespace and,
for each pod that reaches Running, runs its main container's command as a host
process, then ends the pod the way a kubelet would: status.phase Succeeded or
Failed, every container terminated, the main one with the process's exit code.

Like a kubelet it runs the pod's init containers first, in order, then the
main container; a failing init container fails the pod. Every container's
volumes become host directories and paths in its command, env and workingDir
are rewritten to them: the workspace volume (mounted at --mount, default
/sluice) is the host directory --workspace; each emptyDir volume is a
directory of the pod's own under --scratch (shared by its containers, as in a
pod); /tmp/sluice (where compiled Argo steps leave their output parameters)
is a directory of the pod's own too. Env from a Secret (secretKeyRef) is read
from the Secret, as a kubelet does. --image-bin PREFIX=DIR (repeatable) maps
an image's absolute program paths under PREFIX to DIR on the host, so an init
container from the sluice image runs the freshly built sluice-launcher. A
container's termination message file (terminationMessagePath, default
/dev/termination-log) is a file of the pod's own, and what the main container
wrote there is reported as its terminated.message. For an Argo pod (label
workflows.argoproj.io/workflow) it also does what Argo's `wait` container does:
reads the template's output parameters (env ARGO_TEMPLATE) from their files
and reports them in a WorkflowTaskResult named after the node, before the pod
ends.

It uses kubectl (KUBECONFIG from the environment) and a watch, never polling.
It runs until killed; each pod's output goes to --logs/<pod>.log.

Usage: host_runner.py --workspace DIR --scratch DIR --logs DIR [--namespace NS]
                      [--image-bin PREFIX=DIR ...]
"""
import argparse
import base64
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
        self.image_bins = [tuple(m.split("=", 1)) for m in args.image_bin]
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

    def mounts(self, pod, container, tmp_dir):
        """(pod path, host path) of the container's volumes, longest first."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        pairs = []
        for m in container.get("volumeMounts", []):
            v = volumes.get(m["name"], {})
            if "emptyDir" in v:
                host = os.path.join(tmp_dir, "volumes", m["name"])
                os.makedirs(host, exist_ok=True)
                pairs.append((m["mountPath"].rstrip("/"), host))
            elif m["mountPath"].rstrip("/") == self.mount:
                pairs.append((self.mount, self.workspace))
        if not any(p == self.mount for p, _ in pairs):
            pairs.append((self.mount, self.workspace))
        term = container.get("terminationMessagePath", "/dev/termination-log")
        pairs.append((term, os.path.join(tmp_dir, container["name"] + ".termination-log")))
        pairs.append(("/tmp/sluice", tmp_dir))
        return sorted(pairs, key=lambda p: -len(p[0]))

    @staticmethod
    def rewrite_mounts(value, pairs):
        for pod_path, host in pairs:
            value = re.sub(r"(?<![\w./-])" + re.escape(pod_path) + r"(?=/|$|\s|\")", lambda _: host, value)
        return value

    def secret_value(self, ref, cache):
        name = ref["name"]
        if name not in cache:
            cache[name] = json.loads(kubectl("get", "secret", name, "-n", self.ns, "-o", "json")).get("data", {})
        return base64.b64decode(cache[name][ref["key"]]).decode()

    def run_container(self, pod, container, tmp_dir, secrets, log_name):
        """Runs one container's command on the host; returns (exit code, termination message)."""
        name = pod["metadata"]["name"]
        pairs = self.mounts(pod, container, tmp_dir)
        argv = list(container.get("command", [])) + list(container.get("args", []))
        if argv and argv[0].endswith("argoexec") and "--" in argv:
            argv = argv[argv.index("--") + 1:]  # emissary: the template's own command follows "--"
        for prefix, host_dir in self.image_bins:
            if argv and argv[0].startswith(prefix.rstrip("/") + "/"):
                argv[0] = host_dir.rstrip("/") + argv[0][len(prefix.rstrip("/")):]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                env[e["name"]] = self.secret_value(ref, secrets)
            elif "valueFrom" not in e:
                env[e["name"]] = self.rewrite_mounts(e.get("value", ""), pairs)
        argv = [self.rewrite_mounts(a, pairs) for a in argv]
        cwd = self.rewrite_mounts(container.get("workingDir", ""), pairs) or tmp_dir
        os.makedirs(cwd, exist_ok=True)
        term = dict(pairs)[container.get("terminationMessagePath", "/dev/termination-log")]
        log(f"pod {name}: running {container['name']} {argv[:3]}... in {cwd}")
        with open(os.path.join(self.logs, log_name), "w") as out:
            rc = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                timeout=900).returncode
        try:
            with open(term) as f:
                message = f.read(4096)
        except OSError:
            message = ""
        return rc, message

    def run_pod_unsafe(self, pod):
        meta, spec = pod["metadata"], pod["spec"]
        name = meta["name"]
        containers = spec["containers"]
        main = next((c for c in containers if c["name"] == "main"), containers[0])
        tmp_dir = os.path.join(self.scratch, name)
        os.makedirs(tmp_dir, exist_ok=True)
        secrets = {}
        argo_template = None
        for c in containers + spec.get("initContainers", []):
            for e in c.get("env", []):
                if e["name"] == "ARGO_TEMPLATE" and "value" in e:
                    argo_template = json.loads(e["value"])
        wf = meta.get("labels", {}).get("workflows.argoproj.io/workflow")
        for init in spec.get("initContainers", []):
            # Argo's `init` (argoexec: the emissary's setup and input
            # artifacts) has nothing to do here: the workspace is the host's.
            if wf and (init.get("command") or [""])[0].endswith("argoexec"):
                continue
            rc, message = self.run_container(pod, init, tmp_dir, secrets, f"{name}.{init['name']}.log")
            if rc != 0:
                self.finish(pod, rc, f"init container {init['name']} exited {rc}")
                log(f"pod {name}: init container {init['name']} exit {rc}")
                return
        rc, message = self.run_container(pod, main, tmp_dir, secrets, name + ".log")
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
                                             "message": message,
                                             "startedAt": started, "finishedAt": t}}}
        containers = pod["spec"]["containers"]
        main = next((c for c in containers if c["name"] == "main"), containers[0])
        statuses = [terminated(c, rc if c is main else 0) for c in containers]
        for st, c in zip(statuses, containers):
            if c is not main:
                st["state"]["terminated"]["message"] = ""
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
    ap.add_argument("--image-bin", action="append", default=[], metavar="PREFIX=DIR",
                    help="run an image's programs under PREFIX from host directory DIR")
    args = ap.parse_args()
    for d in (args.workspace, args.scratch, args.logs):
        os.makedirs(d, exist_ok=True)
    log(f"watching pods in namespace {args.namespace}")
    sys.exit(Runner(args).watch())


if __name__ == "__main__":
    main()
