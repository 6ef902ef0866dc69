// argo-lint: validates compiled Workflows with Argo's own validation (what
// `argo lint` and the workflow-controller run at submission) and parses every
// resource template's success/failure condition as Argo's executor does
// (k8s.io/apimachinery labels.Parse). Usage: argo-lint FILE... (YAML streams
// from `sluice compile --target argo`; Workflows only). Build: build.sh.
package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	fakewfclientset "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/argoproj/argo-workflows/v3/workflow/templateresolution"
	"github.com/argoproj/argo-workflows/v3/workflow/validate"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

var placeholder = regexp.MustCompile(`\{\{[^}]*\}\}`)

func main() {
	rc := 0
	for _, f := range os.Args[1:] {
		data, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind != "Workflow" {
				continue // WorkflowTemplates and CronWorkflows: the dry-run checks their schema
			}
			var wf wfv1.Workflow
			if err := yaml.UnmarshalStrict([]byte(doc), &wf); err != nil {
				fmt.Printf("%s: unmarshal: %v\n", f, err)
				rc = 1
				continue
			}
			wf.Name = "lint"
			cs := fakewfclientset.NewSimpleClientset()
			getter := templateresolution.WrapWorkflowTemplateInterface(cs.ArgoprojV1alpha1().WorkflowTemplates("default"))
			cgetter := templateresolution.WrapClusterWorkflowTemplateInterface(cs.ArgoprojV1alpha1().ClusterWorkflowTemplates())
			if err := validate.ValidateWorkflow(getter, cgetter, &wf, nil, validate.ValidateOpts{}); err != nil {
				fmt.Printf("%s: argo validation: %v\n", f, err)
				rc = 1
			} else {
				fmt.Printf("%s: argo validation ok (%d templates)\n", f, len(wf.Spec.Templates))
			}
			for _, t := range wf.Spec.Templates {
				if t.Resource == nil {
					continue
				}
				for _, c := range []string{t.Resource.SuccessCondition, t.Resource.FailureCondition} {
					if c == "" {
						continue
					}
					// An input (e.g. the replicas before a canary) is a number at run time.
					c = placeholder.ReplaceAllString(c, "2")
					if _, err := labels.Parse(c); err != nil {
						fmt.Printf("%s: template %s: condition %q does not parse: %v\n", f, t.Name, c, err)
						rc = 1
					}
				}
			}
		}
	}
	os.Exit(rc)
}
