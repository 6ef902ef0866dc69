#!/usr/bin/env python3
"""The command-line conventions of docs/cli.md, on the built binary:

* OutputFormatTest: every command that prints records takes -o (and its
  aliases --output, --format); -o json passes a JSON parser, -o yaml a YAML
  parser with the same value, -o name and -o wide print ids and tables;
* CompletionTest: `source <(sluice completion bash)` in a real bash completes
  subcommands, flags, -o values, run ids and step instances (COMP_WORDS);
* ProgressTest: in a pseudo-terminal `sluice run` keeps a live progress line
  rewritten in place; piped, it prints plain lines; -q prints one line.

Usage: cli_conventions_test.py SLUICE_BINARY [unittest args, e.g. CompletionTest]
"""

import hashlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

SLUICE = os.path.abspath(sys.argv[1])

PIPELINE = """apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: conv}
steps:
  - name: make
    command: [python3, -c, "import time; time.sleep(1.2); open('d.txt', 'w').write('x')"]
    outputs: {artifacts: [{name: data, path: d.txt}]}
  - name: use
    foreach: [a, b]
    inputs: {data: "{{ steps.make.outputs.artifacts.data }}"}
    command: [python3, -c, "import sys; print('item', sys.argv[1])", "{{ item }}"]
"""


NIGHTLY = """apiVersion: sluice.dev/v1
kind: Pipeline
metadata: {name: nightly}
schedule: {cron: "0 3 * * *"}
steps:
  - name: job
    command: [python3, -c, "print(1)"]
"""


class StoreWithRuns(unittest.TestCase):
    """A directory with p.yaml and a store holding two runs of it (r1, r2)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sluice-conv-")
        with open(os.path.join(cls.dir, "p.yaml"), "w") as f:
            f.write(PIPELINE)
        for run_id in ("r1", "r2"):
            cls.sluice("run", "p.yaml", "--run-id", run_id, "-q")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def sluice(cls, *args, check=True):
        p = subprocess.run([SLUICE, *args], cwd=cls.dir, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p.stdout


class OutputFormatTest(StoreWithRuns):
    # Every command that prints records, as the args before -o.
    RECORD_COMMANDS = [
        ("lint", "p.yaml"),
        ("status", "latest"),
        ("show", "r1"),
        ("runs",),
        ("audit",),
        ("plan", "p.yaml"),
        ("lineage", "r1/make/data"),
    ]

    def test_json_parses_and_yaml_is_the_same_value(self):
        for cmd in self.RECORD_COMMANDS:
            with self.subTest(cmd=" ".join(cmd)):
                as_json = json.loads(self.sluice(*cmd, "-o", "json"))
                self.assertTrue(as_json or as_json == [], "empty JSON")
                self.assertEqual(yaml.safe_load(self.sluice(*cmd, "-o", "yaml")), as_json)

    def test_backfill_json_parses(self):
        with open(os.path.join(self.dir, "nightly.yaml"), "w") as f:
            f.write(NIGHTLY)
        planned = json.loads(self.sluice("backfill", "nightly.yaml", "--from", "2026-11-01", "--to", "2026-11-02",
                                         "--dry-run", "-o", "json"))
        self.assertEqual([p["run_id"] for p in planned], ["nightly-cron-20261101-030000", "nightly-cron-20261102-030000"])

    def test_submit_json_parses(self):
        token = "t" * 64
        config = os.path.join(self.dir, "server.yaml")
        with open(config, "w") as f:
            f.write("tokens:\n  - name: test\n    sha256: %s\n" % hashlib.sha256(token.encode()).hexdigest())
        pipelines = os.path.join(self.dir, "pipelines")
        os.makedirs(pipelines, exist_ok=True)
        shutil.copy(os.path.join(self.dir, "p.yaml"), pipelines)
        server = subprocess.Popen([SLUICE, "serve", "--pipelines", pipelines, "--store", "served", "--listen",
                                   "127.0.0.1:0", "--config", config], cwd=self.dir, stderr=subprocess.PIPE, text=True)
        try:
            url = None
            for line in server.stderr:  # bounded by the test's CTest timeout
                m = re.match(r"sluice serve: listening on (\S+)", line)
                if m:
                    url = m.group(1)
                    break
            self.assertIsNotNone(url, "the server did not start")
            # Without --wait: submit --wait can ask for the run before the
            # server has recorded it (HTTP 404), which is not what this checks.
            result = json.loads(self.sluice("submit", "conv", "--server", url, "--token", token, "-o", "json"))
            self.assertRegex(result["run_id"], r"^conv-")
        finally:
            server.terminate()
            server.wait(timeout=60)
            server.stderr.close()

    def test_output_and_format_are_aliases_of_o(self):
        for cmd in self.RECORD_COMMANDS:
            with self.subTest(cmd=" ".join(cmd)):
                want = self.sluice(*cmd, "-o", "json")
                self.assertEqual(self.sluice(*cmd, "--output", "json"), want)
                self.assertEqual(self.sluice(*cmd, "--format=json"), want)

    def test_json_fields(self):
        runs = json.loads(self.sluice("runs", "-o", "json"))
        self.assertEqual([r["id"] for r in runs], ["r2", "r1"])
        status = json.loads(self.sluice("status", "r1", "-o", "json"))
        self.assertEqual(status["run"]["phase"], "Succeeded")
        self.assertEqual(sorted(s["instance"] for s in status["steps"]), ["make", "use[0]", "use[1]"])

    def test_name_prints_one_id_per_line(self):
        self.assertEqual(self.sluice("runs", "-o", "name"), "r2\nr1\n")
        self.assertEqual(sorted(self.sluice("status", "r1", "-o", "name").split()), ["make", "use[0]", "use[1]"])
        self.assertEqual(self.sluice("show", "latest", "-o", "name"), "r2\n")

    def test_wide_adds_columns(self):
        columns = lambda line: re.split(r"\s{2,}", line.strip())
        self.assertEqual(columns(self.sluice("runs", "-o", "wide").splitlines()[0]),
                         ["RUN", "PIPELINE", "PHASE", "CREATED (UTC)", "DURATION", "RESUMES", "FILE", "MESSAGE"])
        status = self.sluice("status", "r2", "-o", "wide").splitlines()
        table = status[status.index("") + 1:]
        self.assertEqual(columns(table[0]), ["STEP", "PHASE", "ATTEMPTS", "DURATION", "EXIT", "STARTED (UTC)",
                                             "FINISHED (UTC)", "REUSED FROM", "MESSAGE"])
        make = columns(table[1])
        self.assertEqual(make[:2] + make[-2:], ["make", "Cached", "r1/make", "outputs reused from r1/make"])

    def test_a_format_the_command_lacks_is_a_usage_error(self):
        p = subprocess.run([SLUICE, "lint", "p.yaml", "-o", "wide"], cwd=self.dir, capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("wide not in {text,json,yaml}", p.stderr)


class CompletionTest(StoreWithRuns):
    def complete(self, line):
        """The candidates bash completion offers for `line` (cursor at its end)."""
        script = self.sluice("completion", "bash")
        words = line.split(" ")
        driver = (script + "\nCOMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
                  f"COMP_CWORD={len(words) - 1}\nCOMP_LINE='{line}'\nCOMP_POINT={len(line)}\n"
                  "_sluice\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
        env = dict(os.environ, PATH=os.path.dirname(SLUICE) + os.pathsep + os.environ["PATH"])
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver], cwd=self.dir, env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return [c for c in p.stdout.split("\n") if c]

    def test_subcommands(self):
        self.assertEqual(self.complete("sluice st"), ["status"])
        self.assertIn("completion", self.complete("sluice "))
        self.assertNotIn("__complete", self.complete("sluice "))

    def test_nested_subcommands(self):
        self.assertEqual(self.complete("sluice export o"), ["openlineage"])

    def test_flags(self):
        self.assertEqual(self.complete("sluice runs --li"), ["--limit"])
        self.assertIn("--keep-going", self.complete("sluice run p.yaml --"))

    def test_output_values(self):
        self.assertEqual(self.complete("sluice runs -o "), ["text", "wide", "json", "yaml", "name"])
        self.assertEqual(self.complete("sluice lint p.yaml --format j"), ["json"])

    def test_run_ids(self):
        self.assertEqual(self.complete("sluice status "), ["latest", "r2", "r1"])
        self.assertEqual(self.complete("sluice logs r"), ["r2", "r1"])

    def test_step_instances_of_the_run(self):
        self.assertEqual(self.complete("sluice logs r1 "), ["make", "use[0]", "use[1]"])
        self.assertEqual(self.complete("sluice logs r1 us"), ["use[0]", "use[1]"])
        self.assertEqual(self.complete("sluice rerun r1 --from "), ["make", "use"])

    def test_files(self):
        self.assertEqual(self.complete("sluice lint p."), ["p.yaml"])

    def test_other_shells(self):
        self.assertIn("sluice __complete", self.sluice("completion", "zsh"))
        self.assertIn("sluice __complete", self.sluice("completion", "fish"))
        if shutil.which("zsh"):
            subprocess.run(["zsh", "-n", "-c", self.sluice("completion", "zsh")], check=True)


class ProgressTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-progress-")
        with open(os.path.join(self.dir, "p.yaml"), "w") as f:
            f.write(PIPELINE)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_in_pty(self, *args):
        """Runs sluice with stdout and stderr on a pseudo-terminal; (exit code, bytes written)."""
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="xterm")
        p = subprocess.Popen([SLUICE, *args], cwd=self.dir, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=slave, env=env)
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                p.kill()
                self.fail("no output for 120 s:\n" + out.decode(errors="replace"))
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        return p.wait(timeout=60), out.decode("utf-8", "replace")

    def test_terminal_shows_a_progress_line_rewritten_in_place(self):
        code, out = self.run_in_pty("run", "p.yaml", "--run-id", "t1")
        self.assertEqual(code, 0, out)
        drawn = re.findall(r"\r(\d+)/(\d+) done, (\d+) running, (\d+) failed, (?:\d+m)?\d+s\x1b\[K", out)
        self.assertGreater(len(drawn), 2, out)
        self.assertIn(("0", "2", "1", "0"), drawn)  # make runs; use not expanded yet
        self.assertIn(("3", "3", "0", "0"), drawn)  # make and use[0], use[1] done
        # The line is erased before the summary, which is plain text.
        self.assertRegex(out, r"\r\x1b\[K\r?\n?.*STEP +PHASE", out)
        self.assertIn("run t1 Succeeded in ", out)

    def test_a_pipe_gets_plain_lines(self):
        p = subprocess.run([SLUICE, "run", "p.yaml", "--run-id", "t2"], cwd=self.dir, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("\r", p.stdout)
        self.assertNotIn("\x1b", p.stdout)
        self.assertRegex(p.stdout, r"\] done +make +Succeeded")
        self.assertIn("[use[1]] item b", p.stdout)

    def test_quiet_prints_one_line_per_run(self):
        p = subprocess.run([SLUICE, "run", "p.yaml", "--run-id", "t3", "-q"], cwd=self.dir, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"^run t3 Succeeded in [0-9.]+m?s\n$")
        code, out = self.run_in_pty("run", "p.yaml", "--run-id", "t4", "-q")
        self.assertEqual(code, 0, out)
        # The progress line is drawn, then erased: what stays is one line.
        self.assertRegex(out, r"\r\x1b\[Krun t4 Succeeded in [0-9.]+m?s\r?\n$")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:])
