#!/usr/bin/env python3
"""The include graph follows the layers (docs/architecture.md).

Every `#include "..."` of product code (engine/, dsl/, executors/,
operators/) is checked against the folders its file may depend on:

  engine core (files directly in engine/)   the core only
  engine/store, engine/run                  the core, engine/store (run: and itself)
  dsl/                                      the core only
  executors/kubernetes/api/ (the api leaf)  the core only
  operators/                                the core, the api leaf, operators/kubernetes/ (shared
                                            pod code) and the operator's own folder
  executors/                                the core, the api leaf and the executor's own folder
  engine/launcher                           the core, engine/store and itself
  engine/cli, engine/server, engine/compile the shells: anything

A program's main (operators/serving/main.cc, executors/local/supervise_main.cc)
is a composition root and may also use engine/store/.

Run: layers_test.py <source dir>. Prints each wrong include as
file:line: <layer> includes <header> and exits 1 when there is one.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
PRODUCT = ("engine/", "dsl/", "executors/", "operators/")
API = "executors/kubernetes/api/"
PROGRAMS = {"operators/serving/main.cc", "executors/local/supervise_main.cc"}


def is_core(path):
    return path.startswith("engine/") and path.count("/") == 1


def folder(path):
    return path.rsplit("/", 1)[0] + "/"


def allowed(src, header):
    """None when `src` may include `header`, else the layer `src` is in."""
    if not header.startswith(PRODUCT):
        return None  # generated headers, third-party
    if src.startswith(("engine/cli/", "engine/server/", "engine/compile/")):
        return None
    if src in PROGRAMS and (header.startswith("engine/store/") or is_core(header)):
        return None
    if is_core(src):
        return None if is_core(header) else "the engine core"
    if src.startswith("engine/store/"):
        return None if is_core(header) or header.startswith("engine/store/") else "engine/store"
    if src.startswith("engine/launcher/"):
        ok = is_core(header) or header.startswith(("engine/store/", "engine/launcher/"))
        return None if ok else "engine/launcher"
    if src.startswith("engine/run/"):
        ok = is_core(header) or header.startswith(("engine/store/", "engine/run/"))
        return None if ok else "engine/run"
    if src.startswith("dsl/"):
        return None if is_core(header) or header.startswith("dsl/") else "dsl"
    if src.startswith(API):
        return None if is_core(header) or header.startswith(API) else "the Kubernetes api leaf"
    if src.startswith("operators/"):
        own = "/".join(src.split("/")[:2]) + "/"
        ok = (is_core(header) or header.startswith((API, "operators/kubernetes/", own))
              or (src.count("/") == 1 and header.startswith("operators/")))  # operators/builtin.cc
        return None if ok else "operators"
    if src.startswith("executors/"):
        own = "/".join(src.split("/")[:2]) + "/"
        ok = is_core(header) or header.startswith((API, own))
        return None if ok else "executors"
    return None


def self_test():
    """The check finds a wrong include in a tree made for it."""
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        files = {
            "engine/plan.cc": '#include "engine/plan.h"\n#include "dsl/dsl.h"\n',
            "executors/local/x.cc": '#include "operators/training/local_plan.h"\n',
            "operators/serving/y.cc": '#include "executors/kubernetes/api/client.h"\n',
            "engine/cli/z.cc": '#include "executors/local/local_executor.h"\n',
            "engine/launcher/w.cc": '#include "engine/store/sqlite_store.h"\n#include "engine/run/runner.h"\n',
        }
        for path, text in files.items():
            os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as f:
                f.write(text)
        got = check(root)[0]
    want = ["engine/launcher/w.cc:2: engine/launcher includes engine/run/runner.h",
            "engine/plan.cc:2: the engine core includes dsl/dsl.h",
            "executors/local/x.cc:1: executors includes operators/training/local_plan.h"]
    if got != want:
        print("self test: expected", want, "got", got)
        return 1
    print("self test: the check reports exactly the three wrong includes")
    return 0


def check(root):
    problems = []
    checked = 0
    for top in PRODUCT:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                full = os.path.join(dirpath, name)
                src = os.path.relpath(full, root).replace(os.sep, "/")
                with open(full, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        checked += 1
                        layer = allowed(src, m.group(1))
                        if layer:
                            problems.append(f"{src}:{lineno}: {layer} includes {m.group(1)}")
    return sorted(problems), checked


def main():
    if sys.argv[1:2] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    problems, checked = check(root)
    for p in problems:
        print(p)
    if checked == 0:
        print("no includes found under", root)
        return 1
    print(f"{checked} includes checked, {len(problems)} against the layers")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
