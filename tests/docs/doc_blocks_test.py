#!/usr/bin/env python3
"""Tests of the docs-as-tests harness itself (doc_blocks.py): which blocks
it runs, how it splits commands, how it matches shown output, and that a
wrong exit code, a drifted output line and a stale known failure each fail.

Usage: doc_blocks_test.py BUILD_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doc_blocks  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "doc_blocks.py")


class ExtractTest(unittest.TestCase):
    def extract(self, text):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        with open(os.path.join(d, "x.md"), "w") as f:
            f.write(textwrap.dedent(text))
        return doc_blocks.extract_blocks(d, "x.md")

    def test_runnable_blocks_and_markers(self):
        blocks, problems = self.extract("""\
            ```sh
            echo a
            ```
            ```yaml
            a: 1
            ```
            ```
            $ echo b
            b
            ```
            <!-- doc-test: exit=1 setup="cd /" -->
            ```console
            false
            ```
            ```
            plain output
            ```
            """)
        self.assertEqual(problems, [])
        self.assertEqual([(b.line, b.info) for b in blocks], [(1, "sh"), (7, ""), (12, "console")])
        self.assertEqual(blocks[2].options, {"exit": "1", "setup": "cd /"})

    def test_unmarked_sluice_block_and_bad_markers_are_problems(self):
        _, problems = self.extract("""\
            ```
            sluice run p.yaml
            ```
            <!-- doc-test: skip -->
            ```sh
            x
            ```
            <!-- doc-test: colour=red -->
            ```sh
            x
            ```
            <!-- doc-test: exit=1 -->
            ```yaml
            a: 1
            ```
            """)
        self.assertEqual(len(problems), 4, problems)
        self.assertIn("x.md:1: a block of sluice commands without a doc-test marker", problems[0])
        self.assertIn("x.md:5: doc-test skip needs reason", problems[1])
        self.assertIn("x.md:9: unknown doc-test option 'colour'", problems[2])
        self.assertIn("x.md:13: doc-test marker on a block that is not a shell block", problems[3])


class SplitTest(unittest.TestCase):
    def test_commands_continuations_and_exit_comments(self):
        block = doc_blocks.Block("x.md", 10, "sh", [
            "# a comment line",
            "sluice lint a.yaml \\",
            "    --format json",
            "for x in 1 2; do",
            "  echo $x",
            "done",
            "sluice diff A B   # exit 1: they differ",
        ], {})
        commands = doc_blocks.split_commands(block)
        self.assertEqual([c.text for c in commands], [
            "sluice lint a.yaml \\\n    --format json", "for x in 1 2; do\n  echo $x\ndone",
            "sluice diff A B   # exit 1: they differ"])
        self.assertEqual([c.line for c in commands], [12, 14, 17])
        self.assertEqual([c.exit for c in commands], [None, None, 1])

    def test_transcript_output_lines(self):
        block = doc_blocks.Block("x.md", 1, "", ["$ echo a", "a", "$ echo b &&", "> echo c", "b", "c"], {})
        commands = doc_blocks.split_commands(block)
        self.assertEqual([(c.text, c.expected) for c in commands],
                         [("echo a", ["a"]), ("echo b &&\necho c", ["b", "c"])])


class MatchTest(unittest.TestCase):
    def test_run_specific_values_are_normalised(self):
        shown = ["run retrain-20261125-171743-57db Succeeded in 12.5s",
                 "model sha256:3b84541b0dba  (model, 2.3 KiB) at 2026-11-25T17:17:45Z",
                 "[15:30:12] done      hello  Succeeded  12ms"]
        actual = ("run retrain-20261207-020101-a0b1 Succeeded in 1m3s\n"
                  "model sha256:0123456789ab (model, 10.0 KiB) at 2026-12-07T02:01:02.5Z\n"
                  "[02:01:02] done hello Succeeded 3.1s\n")
        self.assertEqual(doc_blocks.check_output(shown, actual), "")

    def test_ellipsis_order_and_drift(self):
        self.assertEqual(doc_blocks.check_output(["a … c", "...", "d"], "x\na b c\ny\nd\n"), "")
        self.assertEqual(doc_blocks.check_output(["d", "a b c"], "a b c\nd\n"), "a b c")
        self.assertEqual(doc_blocks.check_output(["params seed=42"], "params seed=43\n"), "params seed=42")


class RunTest(unittest.TestCase):
    """The harness end to end, on a small source tree of its own."""

    def run_harness(self, markdown, known=""):
        src = tempfile.mkdtemp(prefix="doc-blocks-test-")
        self.addCleanup(shutil.rmtree, src)
        os.makedirs(os.path.join(src, "examples"))
        os.makedirs(os.path.join(src, "tests", "docs"))
        with open(os.path.join(src, "x.md"), "w") as f:
            f.write(textwrap.dedent(markdown))
        with open(os.path.join(src, "tests", "docs", "known_failures.txt"), "w") as f:
            f.write(known)
        p = subprocess.run([sys.executable, RUNNER, "--source", src, "--build", BUILD,
                            "--work", os.path.join(src, "work"), "x.md"],
                           capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout

    def test_passing_blocks(self):
        code, out = self.run_harness("""\
            ```sh
            sluice schema > s.json && test -s s.json
            sluice lint missing.yaml   # exit 1: no such file
            ```
            <!-- doc-test: exit=2 -->
            ```sh
            sluice status latest
            ```
            ```
            $ echo "run demo-20261125-153012-a1b2 Succeeded in 61ms"
            run demo-20261125-153012-a1b2 Succeeded in 61ms
            ```
            """)
        self.assertEqual(code, 0, out)
        self.assertIn("3 passed, 0 known failures, 0 skipped, 0 problems", out)

    def test_wrong_exit_code_and_drifted_output_fail(self):
        code, out = self.run_harness("""\
            ```sh
            sluice lint missing.yaml
            ```
            ```
            $ echo "params seed=43"
            params seed=42
            ```
            """)
        self.assertEqual(code, 1, out)
        self.assertIn("line 2: `sluice lint missing.yaml` exited 1, the doc says 0", out)
        self.assertIn("line 5: `echo \"params seed=43\"`: the doc shows\n    params seed=42", out)

    def test_known_failures_must_fail(self):
        block = "```sh\ntrue\n```\n```sh\nfalse\n```\n"
        code, out = self.run_harness(block, known="x.md:4 false fails\n")
        self.assertEqual(code, 0, out)
        self.assertIn("XFAIL x.md:4", out)
        code, out = self.run_harness(block, known="x.md:1 stale entry\n")
        self.assertEqual(code, 1, out)
        self.assertIn("x.md:1: passes, but tests/docs/known_failures.txt lists it (stale entry): delete the entry",
                      out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
