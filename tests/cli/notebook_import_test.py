#!/usr/bin/env python3
"""`sluice import notebook`: a real notebook that trains a scikit-learn model
becomes a pipeline whose run gives the notebook's own result.

The notebook is executed as Jupyter would (nbclient with an ipykernel
kernel, tests/requirements.txt); the accuracy it prints is compared, exactly,
with the metric the imported pipeline's `evaluate` step records. Then the
importer's errors, each with its exit code and message.

Usage: notebook_import_test.py SLUICE_BINARY
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SLUICE = sys.argv.pop(1)


def code(source, tags=()):
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)}, "outputs": [],
            "source": source}


def notebook(cells):
    for i, c in enumerate(cells):
        c["id"] = f"cell-{i}"
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


# A notebook as a data scientist writes one: imports, a parameters cell, data
# loading, a plot that is not part of the pipeline, training, scoring.
TRAINING = notebook([
    {"cell_type": "markdown", "metadata": {}, "source": "# Breast-cancer classifier\n"},
    code("from sklearn.datasets import load_breast_cancer\n"
         "from sklearn.linear_model import LogisticRegression\n"
         "from sklearn.model_selection import train_test_split\n"
         "from sklearn.pipeline import make_pipeline\n"
         "from sklearn.preprocessing import StandardScaler\n", ["imports"]),
    code("test_size = 0.3\nseed = 7\nC = 0.5  # inverse regularisation\n", ["param"]),
    code("X, y = load_breast_cancer(return_X_y=True)\n"
         "X_train, X_test, y_train, y_test = train_test_split(\n"
         "    X, y, test_size=test_size, random_state=seed, stratify=y)\n", ["step:load"]),
    code("print(X_train.shape)\n"),
    code("%config InlineBackend.figure_format = 'png'\n", ["skip"]),
    code("model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))\n"
         "model.fit(X_train, y_train)\n", ["step:train"]),
    code("accuracy = float(model.score(X_test, y_test))\nprint(repr(accuracy))\n", ["step:evaluate", "after:train"]),
    code("accuracy\n", ["metrics"]),
])


class NotebookImportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, nb):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(nb, f)
        return path

    def sluice(self, *args):
        return subprocess.run([SLUICE, "--store", os.path.join(self.dir, "store"), *args], cwd=self.dir,
                              capture_output=True, text=True, timeout=600)

    def test_the_pipeline_gives_the_notebooks_own_result(self):
        import nbclient
        import nbformat
        path = self.write("model.ipynb", TRAINING)
        executed = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(executed, timeout=300, kernel_name="python3").execute()
        printed = [o["text"] for c in executed.cells if c.cell_type == "code" and "accuracy = " in c.source
                   for o in c.outputs if o.get("output_type") == "stream"]
        self.assertEqual(len(printed), 1, printed)
        notebook_accuracy = float(printed[0].strip())

        r = self.sluice("import", "notebook", "model.ipynb", "-o", "pipe")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "wrote pipe/pipeline.yaml and 3 step scripts (load, train, evaluate); "
                                   "params: test_size, seed, C\nrun it: sluice run pipe/pipeline.yaml\n")
        r = self.sluice("lint", "pipe/pipeline.yaml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.sluice("run", "-q", "--run-id", "nb1", "pipe/pipeline.yaml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        shown = json.loads(self.sluice("show", "nb1", "-o", "json").stdout)
        steps = {s["instance"]: s for s in shown["steps"]}
        self.assertEqual(sorted(steps), ["evaluate", "load", "train"])
        self.assertEqual(steps["evaluate"]["metrics"], {"accuracy": notebook_accuracy})
        # The notebook's params are the pipeline's: another C, another model.
        r = self.sluice("run", "-q", "--run-id", "nb2", "-p", "C=0.001", "pipe/pipeline.yaml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        shown = json.loads(self.sluice("show", "nb2", "-o", "json").stdout)
        other = {s["instance"]: s for s in shown["steps"]}["evaluate"]["metrics"]["accuracy"]
        self.assertNotEqual(other, notebook_accuracy)
        # A second import does not overwrite without --force.
        r = self.sluice("import", "notebook", "model.ipynb", "-o", "pipe")
        self.assertEqual((r.returncode, r.stderr), (2, "sluice: error: pipe/pipeline.yaml exists; pass --force to "
                                                       "replace it\n"))

    def test_mistakes_name_the_cell(self):
        cases = [
            ([code("x = 1\n")],
             "cell 1 has code but comes before the first cell tagged step:NAME; tag it step:NAME, imports, "
             "param or skip"),
            ([code("x = 1\n", ["step:Load_Data"])],
             "cell 1: invalid step name 'Load_Data': use lower-case letters, digits and '-'; did you mean "
             "'step:load-data'?"),
            ([code("x = 1\n", ["stpe:load"])],
             "cell 1: unknown tag 'stpe:load'; sluice reads step:NAME, after:NAME, param, imports, metrics and skip"),
            ([code("lr = 1e-3\nmodels = ['a', 'b']\nn = len(models)\n", ["param"])],
             "cell 1 (tagged param), line 3: 'n = len(models)' is not `name = literal` (a number, True/False, a "
             "quoted string or a list of those)"),
            ([code("x = 1\n", ["step:a"]), code("y = 2\n", ["step:b", "after:c"])],
             "cell 2: after:c names no step before this one"),
            ([code("x = 1\n", ["step:a"]), code("print(x)\n", ["metrics"])],
             "cell 2 (tagged metrics): 'print(x)' is not a variable name; write one name per line"),
        ]
        for cells, message in cases:
            with self.subTest(message=message):
                self.write("bad.ipynb", notebook(cells))
                r = self.sluice("import", "notebook", "bad.ipynb", "-o", "out")
                self.assertEqual((r.returncode, r.stderr), (2, "sluice: error: bad.ipynb: " + message + "\n"))
                self.assertFalse(os.path.exists(os.path.join(self.dir, "out")))

    def test_not_a_notebook(self):
        with open(os.path.join(self.dir, "x.ipynb"), "w") as f:
            f.write("[1, 2")
        r = self.sluice("import", "notebook", "x.ipynb", "-o", "out")
        self.assertEqual((r.returncode, r.stderr),
                         (2, "sluice: error: x.ipynb: not a Jupyter notebook (a JSON object with 'cells')\n"))


if __name__ == "__main__":
    unittest.main()
