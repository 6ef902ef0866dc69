#!/usr/bin/env python3
"""Kueue's webhook configurations for a manager that runs as a local process.

Reads Kueue's config/components/webhook/manifests.yaml (from the module) and
writes, to stdout, the Mutating- and ValidatingWebhookConfiguration with only
the webhooks of the integrations the test cluster enables (batch/job, pod)
and of Kueue's own kinds, each pointed at https://127.0.0.1:PORT<path> with
the given CA bundle instead of the in-cluster Service. The Job and Pod
webhooks are limited to namespaces labelled sluice.dev/kueue=enabled (the
manager's managedJobsNamespaceSelector is the same), so the Jobs and pods of
every other test never wait on the manager.

usage: kueue_webhooks.py MANIFESTS PORT CA_FILE
"""
import base64
import sys

import yaml

# Webhook names kept: Kueue's own kinds and the two integrations sluice uses.
KEEP = {"mjob.kb.io", "vjob.kb.io", "mpod.kb.io", "vpod.kb.io",
        "mworkload.kb.io", "vworkload.kb.io", "mclusterqueue.kb.io", "vclusterqueue.kb.io",
        "mresourceflavor.kb.io", "vresourceflavor.kb.io", "vcohort.kb.io"}
WORKLOAD_HOOKS = {"mjob.kb.io", "vjob.kb.io", "mpod.kb.io", "vpod.kb.io"}


def main():
    manifests, port, ca_file = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(ca_file, "rb") as f:
        ca = base64.b64encode(f.read()).decode()
    with open(manifests) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = []
    for doc in docs:
        doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
        hooks = []
        for hook in doc.get("webhooks", []):
            if hook["name"] not in KEEP:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": "https://127.0.0.1:%s%s" % (port, path), "caBundle": ca}
            if hook["name"] in WORKLOAD_HOOKS:
                hook["namespaceSelector"] = {"matchLabels": {"sluice.dev/kueue": "enabled"}}
            hooks.append(hook)
        doc["webhooks"] = hooks
        out.append(doc)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
