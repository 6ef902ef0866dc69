#!/usr/bin/env python3
"""dsl/pipeline.schema.json against lint, with a standard JSON Schema validator.

* the file is a valid draft 2020-12 schema, and `sluice schema` prints it
  byte for byte (the binary embeds it at build time);
* every example pipeline and every whole pipeline in docs/dsl.md is valid;
* every file of the lint corpus (tests/dsl/lint) is valid by the schema
  exactly when lint finds no error in it, except the files in LINT_ONLY,
  whose errors a schema cannot express.

Files are loaded the way YAML 1.2 editors load them (`yes`/`no`/`on`/`off`
are strings, as sluice reads them). Needs `jsonschema` (tests/requirements.txt).
Usage: schema_test.py SOURCE_DIR SLUICE_BINARY
"""

import glob
import json
import os
import re
import subprocess
import sys
import unittest

import jsonschema
import yaml

SOURCE, SLUICE = sys.argv[1], sys.argv[2]
SCHEMA_PATH = os.path.join(SOURCE, "dsl", "pipeline.schema.json")

# Lint errors outside what a JSON Schema can say about one document's shape:
# file -> why.
LINT_ONLY = {
    "bare_param_name": "expression: a bare name inside {{ }}",
    "cache_ignore_unknown_input": "reference: ignoreInputs names an input the step does not declare",
    "code_file_missing": "the file system: a code file that does not exist",
    "cycle_explicit": "graph: a dependency cycle",
    "cycle_implicit": "graph: a dependency cycle through references",
    "cycle_self": "graph: a step that depends on itself",
    "depends_on_finally": "reference: depends names a finally step",
    "duplicate_key_step": "YAML: a key written twice is lost when the document becomes JSON",
    "duplicate_key_top": "YAML: a key written twice is lost when the document becomes JSON",
    "duplicate_output_name": "uniqueness of a field across list items",
    "duplicate_step_name": "uniqueness of a field across list items",
    "expression_syntax_error": "expression syntax",
    "foreach_artifact_path": "types of references: a foreach over one artifact path",
    "foreach_param_not_list": "types of references: a foreach over a non-list parameter",
    "input_refers_to_input": "expression: an input that refers to another input",
    "item_field_missing": "expression: a field the foreach items do not have",
    "item_in_foreach_itself": "expression: item used in its own foreach",
    "item_outside_foreach": "expression: item outside a foreach step",
    "metrics_not_declared": "reference: metrics of a step that declares no metrics file",
    "resource_condition_syntax": "expression: a successCondition / failureCondition that does not parse",
    "run_unknown_field": "expression: an unknown field of run",
    "self_output_reference": "reference: a step that reads its own outputs",
    "unclosed_template": "expression syntax: {{ not closed",
    "unknown_input": "reference: an undeclared input",
    "unknown_output_artifact": "reference: an output the step does not declare",
    "unknown_output_kind": "expression: an unknown output kind",
    "unknown_output_param": "reference: an output the step does not declare",
    "unknown_param": "reference: an undeclared parameter",
    "unknown_root_misspelt": "expression: an unknown name",
    "unknown_step_in_depends": "reference: depends names no step",
    "unknown_step_in_template": "reference: a template names no step",
    "foreach_item_template": "expression: a template inside a literal foreach list",
    "kubernetes_queue_negative_priority": "a rule between keys: a negative priority on a step with kubernetes.queue (also from defaults)",
    "expression_too_deep": "expression: nesting past the expression depth limit",
    # The loader's limits (docs/dsl.md, Limits): bounds on resources, not shape.
    "alias_billion_laughs": "limit: YAML nodes with aliases expanded",
    "alias_recursive": "limit: an alias inside the node it names",
    "foreach_range_too_large": "limit: values of a foreach range",
    "invalid_utf8": "encoding: the file is not UTF-8 (read here with the bad bytes replaced)",
    # Components: what is wrong is in (or against) the other file.
    "component_binding_type": "component: a binding against the component's declared input type",
    "component_artifact_from_param": "component: a binding against the component's declared input type",
    "component_missing_input": "component: an input the component declares is not bound",
    "component_unknown_input": "component: a binding names no input of the component",
    "component_file_missing": "component: the file 'uses' names does not exist",
    "component_sees_params": "component: the component file's own template",
    # Sub-pipelines: what is wrong is in (or against) the other file.
    "subpipeline_binding_type": "sub-pipeline: a binding against the sub-pipeline's declared param type",
    "subpipeline_unknown_param": "sub-pipeline: a binding names no param of the sub-pipeline",
    "subpipeline_missing_param": "sub-pipeline: a param the sub-pipeline declares is not bound",
    "subpipeline_file_missing": "sub-pipeline: the file 'pipeline' names does not exist",
    "subpipeline_cycle": "sub-pipeline: files that run each other",
    "subpipeline_unknown_output": "sub-pipeline: an output the sub-pipeline does not declare",
    "subpipeline_bad_output": "sub-pipeline: the sub-pipeline file's outputs name an undeclared output",
    "subpipeline_foreach_inner_foreach": "sub-pipeline: a foreach step inside a sub-pipeline run with foreach",
    "subpipeline_secret_param": "sub-pipeline: a secret param bound to a value that is not a secret param",
    "min_success_ratio_no_foreach": "a key that needs another key (minSuccessRatio without foreach)",
    # Component graphs: what is wrong is in (or against) the component file.
    "component_graph_cycle": "component graph: a dependency cycle among the component's steps",
    "component_graph_bad_output": "component graph: the component's outputs name an undeclared step or output",
    "component_graph_sees_params": "component graph: the component file's own templates",
    "component_graph_binding_type": "component graph: a binding against the component's declared input type",
    "component_graph_retries": "component graph: retries on a step whose `uses:` names a graph, not one step",
}


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (true/false only)."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                   re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def schema_errors(validator, text):
    """The schema's complaints about a pipeline file's text (YAML errors count)."""
    try:
        docs = list(yaml.load_all(text, Loader=Yaml12Loader))
    except yaml.YAMLError as e:
        return ["YAML: " + str(e).splitlines()[0]]
    if len(docs) != 1:
        return [f"{len(docs)} YAML documents"]
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(docs[0])]


class SchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SCHEMA_PATH, encoding="utf-8") as f:
            cls.schema_text = f.read()
        cls.schema = json.loads(cls.schema_text)
        cls.validator = jsonschema.Draft202012Validator(cls.schema)

    def test_schema_is_a_valid_draft_2020_12_schema(self):
        jsonschema.Draft202012Validator.check_schema(self.schema)
        self.assertEqual(self.schema["$schema"], "https://json-schema.org/draft/2020-12/schema")

    def test_sluice_schema_prints_the_file(self):
        out = subprocess.run([SLUICE, "schema"], capture_output=True, check=True).stdout
        self.assertEqual(out.decode("utf-8"), self.schema_text)

    def test_examples_are_valid(self):
        """Every example pipeline; component files (kind: Component) are
        checked by lint through the pipelines that use them."""
        files = sorted(glob.glob(os.path.join(SOURCE, "examples", "**", "*.yaml"), recursive=True))
        self.assertGreater(len(files), 0)
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if re.search(r"^kind: Component\s*$", text, re.M):
                continue
            rel = os.path.relpath(path, SOURCE)
            # The install kustomization's Kubernetes objects (its pipelines/
            # are pipelines).
            if rel.startswith("examples/kubernetes/install/") and "/pipelines/" not in rel:
                continue
            with self.subTest(path=rel):
                self.assertEqual(schema_errors(self.validator, text), [])

    def test_whole_pipelines_in_the_dsl_doc_are_valid(self):
        with open(os.path.join(SOURCE, "docs", "dsl.md"), encoding="utf-8") as f:
            blocks = re.findall(r"```yaml\n(.*?)```", f.read(), re.S)
        pipelines = [b for b in blocks if b.startswith("apiVersion:")]
        self.assertGreater(len(pipelines), 10)
        for text in pipelines:
            with self.subTest(pipeline=text.split("\n")[3] if text.count("\n") > 3 else text):
                self.assertEqual(schema_errors(self.validator, text), [])

    def test_schema_agrees_with_lint_on_the_lint_corpus(self):
        files = sorted(glob.glob(os.path.join(SOURCE, "tests", "dsl", "lint", "*.yaml")))
        self.assertGreater(len(files), 50)
        seen_lint_only = set()
        for path in files:
            name = os.path.basename(path)[:-len(".yaml")]
            lint = subprocess.run([SLUICE, "lint", "-o", "json", path], capture_output=True, text=True)
            lint_rejects = any(d["severity"] == "error" for d in json.loads(lint.stdout))
            self.assertEqual(lint.returncode, 1 if lint_rejects else 0, lint.stdout)
            with open(path, encoding="utf-8", errors="replace") as f:
                errors = schema_errors(self.validator, f.read())
            with self.subTest(file=name):
                if name in LINT_ONLY:
                    seen_lint_only.add(name)
                    self.assertTrue(lint_rejects, "listed as lint-only, but lint accepts it")
                    self.assertEqual(errors, [], "listed as lint-only, but the schema rejects it: "
                                     "delete it from LINT_ONLY")
                elif lint_rejects:
                    self.assertNotEqual(errors, [], "lint rejects it, the schema accepts it")
                else:
                    self.assertEqual(errors, [], "lint accepts it, the schema rejects it")
        self.assertEqual(set(LINT_ONLY) - seen_lint_only, set(), "LINT_ONLY names files that do not exist")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
