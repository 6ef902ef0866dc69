#!/usr/bin/env python3
"""examples/retrain, whose prepare, train and evaluate steps use the components
of examples/components, gives the outputs of the pipeline as it was written
before (each step's script run with its own argv): the same step names, the
same data set and models byte for byte, the same metrics and the same
selected model.

The "before" side runs the scripts of examples/retrain/steps with exactly
the argv the pipeline's own steps had, each in its own directory as sluice
runs them (examples/README.md, "The retrain steps by hand"). threshold=0.99
keeps the run local: logreg's 0.986014 does not pass it, so register, deploy
and validate are skipped and no model is served.

Usage: retrain_components_test.py SLUICE_BINARY
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

SLUICE = sys.argv.pop(1)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PIPELINE = os.path.join(ROOT, "examples", "retrain", "pipeline.yaml")
STEPS = os.path.join(ROOT, "examples", "retrain", "steps")
MODELS = ["logreg", "random_forest", "gradient_boosting"]


def sha256(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def read(path):
    with open(path) as f:
        return f.read()


def param(path):
    """An output param's value, as sluice reads it: without the final newline."""
    return read(path).rstrip("\n")


class RetrainComponentsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def script(self, workdir, name, *args):
        """Runs one step's script as the pipeline did, in its own directory."""
        cwd = os.path.join(self.dir, "by-hand", workdir)
        os.makedirs(cwd)
        subprocess.run([sys.executable, os.path.join(STEPS, name), *args], cwd=cwd, check=True,
                       capture_output=True, timeout=600)
        return cwd

    def by_hand(self):
        """The outputs of the pipeline's scripts, run with the argv its steps had."""
        prepare = self.script("prepare", "prepare.py", "--test-size", "0.25", "--seed", "42", "--out", "data")
        data = os.path.join(prepare, "data")
        models = [os.path.join(self.script(f"train{i}", "train.py", "--model", m, "--data", data, "--seed", "42",
                                           "--out", "model.pkl"), "model.pkl")
                  for i, m in enumerate(MODELS)]
        evaluations = [self.script(f"evaluate{i}", "evaluate.py", "--name", m, "--names", json.dumps(MODELS),
                                   "--models", json.dumps(models), "--data", data)
                       for i, m in enumerate(MODELS)]
        accuracies = [param(os.path.join(e, "accuracy.txt")) for e in evaluations]
        select = self.script("select", "select_best.py", "--names", json.dumps(MODELS), "--models",
                             json.dumps(models), "--accuracies", json.dumps(accuracies), "--out", "best")
        return {
            "rows": param(os.path.join(data, "rows.txt")),
            "data": {f: sha256(os.path.join(data, f)) for f in sorted(os.listdir(data))},
            "models": [sha256(m) for m in models],
            "metrics": [json.loads(read(os.path.join(e, "metrics.json"))) for e in evaluations],
            "accuracies": accuracies,
            "best_name": param(os.path.join(select, "best", "name.txt")),
            "best_model": sha256(os.path.join(select, "best", "model.pkl")),
            "best_metrics": json.loads(read(os.path.join(select, "best", "metrics.json"))),
        }

    def test_the_component_pipeline_gives_the_outputs_of_the_scripts_it_runs(self):
        run = subprocess.run([SLUICE, "run", "-q", PIPELINE, "-p", "threshold=0.99"], cwd=self.dir,
                             capture_output=True, text=True, timeout=600)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        run_id = run.stdout.split()[1]
        shown = subprocess.run([SLUICE, "show", run_id, "-o", "json"], cwd=self.dir, capture_output=True,
                               text=True, timeout=60)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        steps = {s["instance"]: s for s in json.loads(shown.stdout)["steps"]}
        # The step names users see (and tests/k8s, docs name) are unchanged.
        self.assertEqual({name: s["phase"] for name, s in steps.items()}, {
            "prepare": "Succeeded", "requests": "Succeeded", "select": "Succeeded", "report": "Succeeded",
            "train[0]": "Succeeded", "train[1]": "Succeeded", "train[2]": "Succeeded",
            "evaluate[0]": "Succeeded", "evaluate[1]": "Succeeded", "evaluate[2]": "Succeeded",
            "register": "Skipped", "deploy": "Skipped", "validate": "Skipped"})
        for name in ("prepare", "train[0]", "evaluate[2]"):
            self.assertTrue(steps[name]["cache_key"], name)

        want = self.by_hand()
        self.assertEqual(steps["prepare"]["output_params"], {"rows": want["rows"]})
        dataset = steps["prepare"]["outputs"][0]["uri"].removeprefix("file://")
        self.assertEqual({f: sha256(os.path.join(dataset, f)) for f in sorted(os.listdir(dataset))}, want["data"])
        self.assertEqual([steps[f"train[{i}]"]["outputs"][0]["digest"] for i in range(3)], want["models"])
        self.assertEqual([steps[f"evaluate[{i}]"]["metrics"] for i in range(3)], want["metrics"])
        self.assertEqual([steps[f"evaluate[{i}]"]["output_params"]["accuracy"] for i in range(3)],
                         want["accuracies"])
        self.assertEqual(steps["select"]["output_params"], {"best_name": want["best_name"]})
        best = [o for o in steps["select"]["outputs"] if o["name"] == "best_model"]
        self.assertEqual(best[0]["digest"], want["best_model"])
        self.assertEqual(steps["select"]["metrics"], want["best_metrics"])
        # What the README says seed 42 gives.
        self.assertEqual(want["best_name"], "logreg")
        self.assertEqual(want["accuracies"], ["0.986014", "0.958042", "0.958042"])


if __name__ == "__main__":
    unittest.main()
