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
import shutil
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


# A notebook as a data scientist writes one (imports and functions cells, a
# param cell, data loading and preparation, a cell that only explores,
# training, scoring), checked in as Jupyter saved it.
CLASSIFIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "notebook",
                          "classifier.ipynb")


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
        path = os.path.join(self.dir, "model.ipynb")
        shutil.copy(CLASSIFIER, path)
        executed = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(executed, timeout=300, kernel_name="python3").execute()
        printed = [o["text"] for c in executed.cells if c.cell_type == "code" and "print(repr(accuracy))" in c.source
                   for o in c.outputs if o.get("output_type") == "stream"]
        self.assertEqual(len(printed), 1, printed)
        notebook_accuracy = float(printed[0].strip())

        r = self.sluice("import", "notebook", "model.ipynb", "-o", "pipe")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "wrote pipe/pipeline.yaml and 4 step scripts (load, prepare, train, evaluate); "
                                   "params: test_size, seed, C\nrun it: sluice run pipe/pipeline.yaml\n")
        r = self.sluice("lint", "pipe/pipeline.yaml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.sluice("run", "-q", "--run-id", "nb1", "pipe/pipeline.yaml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        shown = json.loads(self.sluice("show", "nb1", "-o", "json").stdout)
        steps = {s["instance"]: s for s in shown["steps"]}
        self.assertEqual(sorted(steps), ["evaluate", "load", "prepare", "train"])
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
        # Every message is checked in tests/dsl/notebook_test.cc; here the
        # command's side: exit 2, the message on stderr, nothing written.
        cases = [
            ([code("x = 1\n")],
             "cell 1 has code but comes before the first cell tagged step:NAME; tag it step:NAME, imports, "
             "functions, param or skip"),
            ([code("x = 1\n", ["stpe:load"])],
             "cell 1: unknown tag 'stpe:load'; did you mean 'step:load'? (sluice reads step:NAME, after:NAME, "
             "param, imports, functions, metrics and skip)"),
            ([code("x = 1\n", ["step:train"]), code("y = 2\n", ["step:score", "after:report"])],
             "cell 2: after:report names no step (the steps: train, score)"),
            ([code("x = 1\n", ["step:a", "after:b"]), code("y = 2\n", ["step:b"])],
             "cell 1: the after: tags make a cycle: a -> b -> a"),
        ]
        for cells, message in cases:
            with self.subTest(message=message):
                self.write("bad.ipynb", notebook(cells))
                r = self.sluice("import", "notebook", "bad.ipynb", "-o", "out")
                self.assertEqual((r.returncode, r.stdout, r.stderr),
                                 (2, "", "sluice: error: bad.ipynb: " + message + "\n"))
                self.assertFalse(os.path.exists(os.path.join(self.dir, "out")))

    def test_not_a_notebook(self):
        with open(os.path.join(self.dir, "x.ipynb"), "w") as f:
            f.write('{"cells": [\n  1, 2')
        r = self.sluice("import", "notebook", "x.ipynb", "-o", "out")
        self.assertEqual((r.returncode, r.stderr),
                         (2, "sluice: error: x.ipynb:2:7: not JSON: syntax error while parsing array - unexpected "
                             "end of input; expected ']'\n"))

if __name__ == "__main__":
    unittest.main()
