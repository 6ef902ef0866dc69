#!/usr/bin/env python3
"""Docs as tests: runs the shell blocks of README.md and docs/*.md.

Which blocks run (docs/testing.md, "The docs are tests"):

* a fenced block with info string `sh`, `bash`, `shell` or `console`, or a
  fenced block without an info string whose first line starts with `$ `;
* an HTML comment on the line right before the fence adjusts it:

      <!-- doc-test: skip reason="needs root: installs packages" -->
      <!-- doc-test: exit=1 -->                 the last command exits 1
      <!-- doc-test: cluster -->                runs only against the test cluster
      <!-- doc-test: setup="sluice run examples/retrain/pipeline.yaml -q" -->
      <!-- doc-test: vars="RUN RUN1" -->        placeholders RUN, RUN1 become "$RUN", "$RUN1"
                                              (the setup assigns them)
      <!-- doc-test: http-stub="http://marquez:5000" -->
                                              a local HTTP server that accepts every
                                              POST stands in for that URL
      <!-- doc-test: replace="A=>B;C=>D" -->  textual replacements before running
      <!-- doc-test: timeout=300 -->          seconds for the block (default 180)

  A command whose trailing comment starts with `exit N` (`# exit 1: ...`) is
  expected to exit N; every other command must exit 0 (the last one: the
  `exit=` option, default 0).
* a fenced block without an info string whose first line starts with
  `sluice ` must carry a marker or another info string (`text`): a command
  shown to readers is either tested or says why not.

Each block runs in a fresh directory holding a copy of examples/, a link
`build` to the build tree, and no store; PATH starts with the build tree, so
`sluice` is the built binary. In a `$ ` transcript the lines after a command
are its expected output: each must appear in the command's output (stdout and
stderr), in order, after normalisation: whitespace runs become one space,
`…` matches anything, and run-specific values become placeholders on both
sides: digests (`sha256:<hex>`), run-id suffixes (`-20261125-171743-57db`),
times, durations and sizes. A line `...` is ignored.

tests/docs/known_failures.txt lists blocks that fail for a known reason
(`file:line reason`, the line of the opening fence); such a block must fail,
and passing is an error too, so that the entry is deleted with the fix.

Exit status: 0 all blocks passed (or failed as listed), 1 a block failed,
77 nothing to run (cluster mode with SLUICE_SKIP_K8S=1).
"""

import argparse
import http.server
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

RUNNABLE_INFO = {"sh", "bash", "shell", "console"}
KNOWN_OPTIONS = {"skip", "reason", "exit", "cluster", "setup", "vars", "http-stub", "replace", "timeout"}
MARK = "\x1eDOCTEST"


class Block:
    def __init__(self, path, line, info, body, options):
        self.path = path          # relative to the source dir
        self.line = line          # 1-based line of the opening fence
        self.info = info
        self.body = body          # list of lines, fence indentation removed
        self.options = options    # dict from the doc-test marker

    @property
    def key(self):
        return f"{self.path}:{self.line}"


def parse_marker(text, where):
    """`skip reason="x" exit=1` -> {"skip": True, "reason": "x", "exit": "1"}."""
    options = {}
    for token in shlex.split(text):
        name, eq, value = token.partition("=")
        if name not in KNOWN_OPTIONS:
            raise ValueError(f"{where}: unknown doc-test option '{name}'")
        options[name] = value if eq else True
    if options.get("skip") and not options.get("reason"):
        raise ValueError(f"{where}: doc-test skip needs reason=\"...\"")
    return options


def extract_blocks(source_dir, rel_path):
    """Every fenced block of a Markdown file, with its marker, and the runnable ones."""
    with open(os.path.join(source_dir, rel_path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, problems = [], []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3)
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*" + fence + r"\s*$", lines[j]):
            j += 1
        body = [l[len(indent):] if l.startswith(indent) else l.lstrip() for l in lines[i + 1:j]]
        options = {}
        k = i - 1
        marker = re.match(r"^\s*<!--\s*doc-test:(.*?)-->\s*$", lines[k]) if k >= 0 else None
        where = f"{rel_path}:{i + 1}"
        if marker:
            try:
                options = parse_marker(marker.group(1), where)
            except ValueError as e:
                problems.append(str(e))
        first = next((l for l in body if l.strip()), "")
        runnable = info in RUNNABLE_INFO or (info == "" and first.startswith("$ "))
        if info == "" and not marker and first.startswith("sluice "):
            problems.append(f"{where}: a block of sluice commands without a doc-test marker: "
                            "make it ```sh (tested), or mark it skip with a reason, or ```text")
        if marker and not runnable:
            problems.append(f"{where}: doc-test marker on a block that is not a shell block")
        if runnable:
            blocks.append(Block(rel_path, i + 1, info, body, options))
        i = j + 1
    return blocks, problems


def bash_complete(text):
    """True when `text` is a complete bash command (no open quote, loop, continuation)."""
    if text.rstrip().endswith("\\"):
        return False
    return subprocess.run(["bash", "-n"], input=text, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class Command:
    def __init__(self, text, line):
        self.text = text          # the shell text
        self.line = line          # line in the Markdown file
        self.expected = []        # expected output lines (transcripts)
        m = re.search(r"#\s*exit\s+(\d+)", text.split("\n")[-1])
        self.exit = int(m.group(1)) if m else None


def split_commands(block):
    """The block's commands, each with its expected output lines."""
    commands = []
    transcript = any(l.startswith("$ ") for l in block.body)
    pending, pending_line = [], 0
    for n, raw in enumerate(block.body):
        line_no = block.line + 1 + n
        if transcript:
            if raw.startswith("$ ") and not pending:
                pending, pending_line = [raw[2:]], line_no
            elif pending:
                pending.append(raw[2:] if raw.startswith("> ") else raw)
            else:
                if commands:
                    commands[-1].expected.append(raw)
                continue
        else:
            if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            if not pending:
                pending_line = line_no
            pending.append(raw)
        text = "\n".join(pending)
        if bash_complete(text):
            commands.append(Command(text, pending_line))
            pending = []
    if pending:
        commands.append(Command("\n".join(pending), pending_line))
    return commands


NORMALISERS = [
    (re.compile(r"sha256:[0-9a-f]{6,64}"), "sha256:<hex>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?Z?( UTC)?"), "<time>"),
    (re.compile(r"-\d{8}-\d{6}(-[0-9a-f]{4})?\b"), "-<stamp>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}\b"), "<clock>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(B|KiB|MiB|GiB|bytes)\b"), "<size>"),
    (re.compile(r"\b(\d+m)?\d+(\.\d+)?(ms|s)\b"), "<duration>"),
    (re.compile(r"\s+"), " "),
]


def normalise(line):
    for pattern, replacement in NORMALISERS:
        line = pattern.sub(replacement, line)
    return line.strip()


def line_pattern(expected):
    parts = [re.escape(p) for p in normalise(expected).split("…")]
    return re.compile("^" + ".*".join(parts) + "$")


def check_output(expected, actual):
    """'' when every expected line appears in `actual`, in order; else the first missing one."""
    actual_lines = [normalise(l) for l in actual.split("\n")]
    pos = 0
    for line in expected:
        if not line.strip() or line.strip() in ("...", "…"):
            continue
        pattern = line_pattern(line)
        while pos < len(actual_lines) and not pattern.match(actual_lines[pos]):
            pos += 1
        if pos == len(actual_lines):
            return line
        pos += 1
    return ""


class StubHandler(http.server.BaseHTTPRequestHandler):
    """Accepts every POST (an OpenLineage endpoint's stand-in) with 200."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def start_stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
    server.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def prepare_dir(work, source_dir, build_dir):
    os.makedirs(work)
    shutil.copytree(os.path.join(source_dir, "examples"), os.path.join(work, "examples"))
    os.symlink(build_dir, os.path.join(work, "build"))


def undeploy_services(work, build_dir):
    """Stops the model servers a block's deploy steps left running."""
    serving = os.path.join(build_dir, "operators", "serving", "sluice-serving")
    for root, dirs, files in os.walk(work):
        if "build" in dirs:
            dirs.remove("build")
        if os.path.basename(root) != "services":
            continue
        for f in files:
            if f.endswith(".json"):
                subprocess.run([serving, "undeploy", "--service", f[:-5],
                                "--state-dir", os.path.dirname(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def stop_group(pgid):
    """Stops what a block left running: SIGTERM to its process group (so a
    sluice run or serve cancels its steps), SIGKILL after 10 s."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_block(block, args, work):
    """Runs one block in `work`; returns a list of failure messages (empty: passed)."""
    opts = block.options
    commands = split_commands(block)
    replacements = []
    for pair in (opts.get("replace") or "").split(";"):
        if "=>" in pair:
            old, new = pair.split("=>", 1)
            replacements.append((old, new))
    stub = None
    if opts.get("http-stub"):
        stub = start_stub()
        replacements.append((opts["http-stub"], f"http://127.0.0.1:{stub.server_address[1]}"))
    placeholders = (opts.get("vars") or "").split()

    def prepare(text):
        for old, new in replacements:
            text = text.replace(old, new)
        for var in placeholders:
            text = re.sub(r"\b" + var + r"\b", '"$' + var + '"', text)
        return text

    script = ["exec 2>&1"]
    if opts.get("setup"):
        script += [f"printf '\\n{MARK}-CMD setup\\n'", opts["setup"],
                   f"printf '\\n{MARK}-RC setup %d\\n' $?"]
    for n, cmd in enumerate(commands):
        script += [f"printf '\\n{MARK}-CMD {n}\\n'", prepare(cmd.text),
                   f"printf '\\n{MARK}-RC {n} %d\\n' $?"]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([args.build, os.path.join(args.build, "operators", "serving"),
                                   env.get("PATH", "")])
    env["HOME"] = work
    env["DOCTEST_DIR"] = os.path.dirname(os.path.abspath(__file__))
    env.pop("SLUICE_STORE", None)
    if args.cluster:
        env["KUBECONFIG"] = os.path.join(os.environ.get("SLUICE_K8S_STATE", "/tmp/sluice-k8s"),
                                         "kubeconfig")
    timeout = int(opts.get("timeout") or 180)
    started = time.monotonic()
    # Output goes to a file, not a pipe: what a block leaves running in the
    # background (a server) must not keep the block from ending.
    out_path = os.path.join(work, ".doctest-output")
    with open(out_path, "wb") as out_file:
        proc = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=work, env=env,
                                stdout=out_file, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        proc.kill()
        proc.wait()
        stop_group(proc.pid)
        undeploy_services(work, args.build)
        if stub:
            stub.shutdown()
    with open(out_path, "rb") as f:
        out = f.read().decode("utf-8", "replace")
    elapsed = time.monotonic() - started

    outputs, codes, current = {}, {}, None
    for line in out.split("\n"):
        if line.startswith(MARK + "-CMD "):
            current = line.split()[1]
            outputs[current] = []
        elif line.startswith(MARK + "-RC "):
            _, n, rc = line.split()
            codes[n] = int(rc)
        elif current is not None:
            outputs[current].append(line)

    if args.verbose:
        for key, lines in outputs.items():
            print(f"--- {block.key} command {key} (exit {codes.get(key)}):\n" + "\n".join(lines))
    failures = []
    if timed_out:
        failures.append(f"timed out after {timeout}s")
    if stub and not stub.bodies and not timed_out:
        failures.append(f"nothing was POSTed to the stand-in for {opts['http-stub']}")
    if "setup" in codes and codes["setup"] != 0:
        failures.append(f"setup exited {codes['setup']}:\n" + "\n".join(outputs.get("setup", [])))
        return failures, elapsed
    for n, cmd in enumerate(commands):
        key = str(n)
        shown = cmd.text.split("\n")[0]
        if key not in codes:
            if not timed_out:
                failures.append(f"line {cmd.line}: `{shown}` did not finish (the shell exited)")
            else:
                failures.append(f"line {cmd.line}: `{shown}` did not finish")
            failures.append("output:\n" + "\n".join(outputs.get(key, [])))
            break
        want = cmd.exit
        if want is None:
            want = int(opts.get("exit", 0)) if n == len(commands) - 1 else 0
        text = "\n".join(outputs[key])
        if codes[key] != want:
            failures.append(f"line {cmd.line}: `{shown}` exited {codes[key]}, the doc says {want}\n"
                            f"output:\n{text}")
        missing = check_output(cmd.expected, text)
        if missing:
            failures.append(f"line {cmd.line}: `{shown}`: the doc shows\n    {missing}\n"
                            f"which is not in its output (normalised: {normalise(missing)!r}):\n{text}")
    return failures, elapsed


def load_known_failures(path):
    known = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for raw in f:
                raw = raw.strip()
                if raw and not raw.startswith("#"):
                    key, _, reason = raw.partition(" ")
                    known[key] = reason.strip()
    return known


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="the source tree")
    parser.add_argument("--build", required=True, help="the build tree (holds sluice)")
    parser.add_argument("--work", help="where the blocks' directories go (default: a temp dir)")
    parser.add_argument("--cluster", action="store_true",
                        help="run only the blocks marked cluster, against the test cluster")
    parser.add_argument("--list", action="store_true", help="list the blocks and their options")
    parser.add_argument("--line", type=int, action="append", help="only the block at this line")
    parser.add_argument("--verbose", action="store_true", help="print every command's output")
    parser.add_argument("files", nargs="+", help="Markdown files, relative to --source")
    args = parser.parse_args()
    args.build = os.path.abspath(args.build)
    args.source = os.path.abspath(args.source)

    if args.cluster and os.environ.get("SLUICE_SKIP_K8S") == "1":
        print("SLUICE_SKIP_K8S=1: the cluster blocks are skipped")
        return 77

    known = load_known_failures(os.path.join(args.source, "tests", "docs", "known_failures.txt"))
    blocks, problems = [], []
    for f in args.files:
        b, p = extract_blocks(args.source, f)
        blocks += b
        problems += p
    all_keys = {b.key for b in blocks}
    for key in known:
        if key.split(":")[0] in args.files and key not in all_keys:
            problems.append(f"tests/docs/known_failures.txt: {key} is not a runnable block")
    if args.line:
        blocks = [b for b in blocks if b.line in args.line]

    if args.list:
        for b in blocks:
            print(b.key, b.options or "", f"[known failure: {known[b.key]}]" if b.key in known else "")
        return 0

    work_root = args.work or tempfile.mkdtemp(prefix="sluice-docs-")
    failed = list(problems)
    counts = {"passed": 0, "skipped": 0, "xfail": 0}
    for block in blocks:
        if block.options.get("skip"):
            counts["skipped"] += 1
            print(f"SKIP  {block.key}: {block.options['reason']}")
            continue
        if bool(block.options.get("cluster")) != args.cluster:
            continue
        work = os.path.join(work_root, block.path.replace("/", "_") + f"-{block.line}")
        shutil.rmtree(work, ignore_errors=True)
        prepare_dir(work, args.source, args.build)
        failures, elapsed = run_block(block, args, work)
        if block.key in known:
            if failures:
                counts["xfail"] += 1
                print(f"XFAIL {block.key} ({elapsed:.1f}s): {known[block.key]}")
            else:
                failed.append(f"{block.key}: passes, but tests/docs/known_failures.txt lists it "
                              f"({known[block.key]}): delete the entry")
            continue
        if failures:
            failed.append(f"{block.key} ({elapsed:.1f}s) failed:\n" + "\n".join(failures))
            print(f"FAIL  {block.key} ({elapsed:.1f}s)")
        else:
            counts["passed"] += 1
            print(f"PASS  {block.key} ({elapsed:.1f}s)")
    if not args.work and not failed:
        shutil.rmtree(work_root, ignore_errors=True)
    elif failed:
        print(f"\nthe blocks' directories are kept in {work_root}")
    for f in failed:
        print("\n" + f)
    print(f"\n{counts['passed']} passed, {counts['xfail']} known failures, "
          f"{counts['skipped']} skipped, {len(failed)} problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
