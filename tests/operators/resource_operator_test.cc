// `type: resource`: Argo's condition language over an object's status, the
// object sluice builds from a manifest (its name, labels and annotations
// merged in), and how its status is read back from the object alone.

#include <gtest/gtest.h>

#include "engine/operator.h"
#include "operators/resource/condition.h"
#include "operators/resource/resource.h"

namespace sluice::operators {
namespace {

using resource::Condition;
using resource::ParseCondition;

Json Status(const char* status) { return Json{{"status", Json::parse(status)}}; }

TEST(ResourceConditionTest, SuccessNeedsEveryRequirementFailureAnyOne) {
  auto success = ParseCondition("status.succeeded > 0, status.phase == Done");
  ASSERT_TRUE(success) << success.error().ToString();
  EXPECT_TRUE(resource::MatchesAll(*success, Status(R"({"succeeded": 1, "phase": "Done"})")));
  EXPECT_FALSE(resource::MatchesAll(*success, Status(R"({"succeeded": 1, "phase": "Running"})")));
  EXPECT_FALSE(resource::MatchesAll(*success, Status(R"({"phase": "Done"})")));

  auto failure = ParseCondition("status.failed > 2, status.phase in (Failed, Error)");
  ASSERT_TRUE(failure);
  const resource::Requirement* hit = resource::FirstMatch(*failure, Status(R"({"failed": 1, "phase": "Error"})"));
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->ToString(), "status.phase in (Failed, Error)");
  EXPECT_EQ(resource::FirstMatch(*failure, Status(R"({"failed": 2})")), nullptr);
}

TEST(ResourceConditionTest, OperatorsFollowLabelSelectors) {
  const Json obj = Status(R"({"phase": "Running", "active": true, "workers": [{"n": 3}, {"n": 4}], "ratio": "0.5"})");
  auto holds = [&](const char* text) {
    auto c = ParseCondition(text);
    EXPECT_TRUE(c) << text << ": " << c.error().ToString();
    return c && resource::MatchesAll(*c, obj);
  };
  EXPECT_TRUE(holds("status.phase = Running"));
  EXPECT_TRUE(holds("status.phase != Failed"));
  EXPECT_TRUE(holds("status.missing != Failed"));  // a missing path is "not equal"
  EXPECT_FALSE(holds("status.missing == Failed"));
  EXPECT_TRUE(holds("status.phase notin (Failed,Error)"));
  EXPECT_TRUE(holds("status.active == true"));
  EXPECT_TRUE(holds("status.active"));
  EXPECT_TRUE(holds("!status.completionTime"));
  EXPECT_FALSE(holds("!status.phase"));
  EXPECT_TRUE(holds("status.workers.1.n > 3"));
  EXPECT_TRUE(holds("status.workers.# == 2"));
  EXPECT_FALSE(holds("status.ratio > 0"));  // not an integer: no match
  EXPECT_TRUE(holds(""));                   // no requirement: holds
}

TEST(ResourceConditionTest, SyntaxErrorsNameTheColumn) {
  EXPECT_EQ(ParseCondition("status.succeeded >").error().message(),
            "column 19: expected a value after '>'");
  EXPECT_EQ(ParseCondition("status.succeeded > x").error().message(), "column 18: '>' needs an integer, got 'x'");
  EXPECT_EQ(ParseCondition("status.phase ~ Failed").error().message(),
            "column 14: expected an operator (==, !=, >, <, in, notin), ',' or the end after 'status.phase', got "
            "'~ Failed'");
  EXPECT_EQ(ParseCondition("status.phase in (A, B").error().message(),
            "column 22: expected ',' or ')' in the 'in' list");
  EXPECT_EQ(ParseCondition("status.a == 1,").error().message(), "column 15: expected a requirement after ','");
  EXPECT_EQ(ParseCondition("status.phase == Done Now").error().message(),
            "column 22: expected ',' or the end, got 'Now'");
}

Task XgbTask() {
  Task t;
  t.run_id = "r1";
  t.pipeline = "p";
  t.step = "train";
  t.instance = "train";
  t.attempt = 2;
  t.operator_type = "resource";
  t.config = Json::parse(R"({
    "manifest": {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob",
                 "metadata": {"labels": {"team": "a", "sluice.dev/run": "spoofed"}},
                 "spec": {"xgbReplicaSpecs": {"Master": {"replicas": 1}}}},
    "successCondition": "status.replicaStatuses.Master.succeeded > 0",
    "failureCondition": "status.replicaStatuses.Master.failed > 0",
    "kubernetes": {"namespace": "ml"}})");
  return t;
}

TEST(ResourceOperatorTest, TheObjectIsTheManifestWithSluicesIdentity) {
  ResourceOperator op;
  auto obj = op.KubernetesObject(XgbTask(), {});
  ASSERT_TRUE(obj) << obj.error().ToString();
  const Json& meta = (*obj)["metadata"];
  EXPECT_EQ(meta["name"], "r1-train-a2");
  EXPECT_EQ(meta["namespace"], "ml");
  EXPECT_EQ(meta["labels"]["team"], "a");
  EXPECT_EQ(meta["labels"]["sluice.dev/run"], "r1");
  EXPECT_EQ(meta["labels"]["sluice.dev/attempt"], "2");
  EXPECT_EQ(meta["annotations"]["sluice.dev/instance"], "train");
  EXPECT_EQ(meta["annotations"]["sluice.dev/success-condition"], "status.replicaStatuses.Master.succeeded > 0");
  EXPECT_EQ((*obj)["spec"]["xgbReplicaSpecs"]["Master"]["replicas"], 1);

  auto kind = op.KindOf(*obj);
  ASSERT_TRUE(kind);
  EXPECT_EQ(kind->api_version, "kubeflow.org/v1");
  EXPECT_EQ(kind->plural, "xgboostjobs");

  const Operator::ArgoConditions c = op.ArgoResourceConditions(*obj);
  EXPECT_EQ(c.success, "status.replicaStatuses.Master.succeeded > 0");
  EXPECT_EQ(c.failure, "status.replicaStatuses.Master.failed > 0");
}

TEST(ResourceOperatorTest, StatusIsReadFromTheObjectAlone) {
  ResourceOperator op;
  Json obj = *op.KubernetesObject(XgbTask(), {});
  EXPECT_FALSE(op.ReadStatus(obj).finished);
  obj["status"] = Json::parse(R"({"replicaStatuses": {"Master": {"active": 1}}})");
  EXPECT_FALSE(op.ReadStatus(obj).finished);
  obj["status"]["replicaStatuses"]["Master"]["succeeded"] = 1;
  WorkloadState st = op.ReadStatus(obj);
  EXPECT_TRUE(st.finished);
  EXPECT_EQ(st.outcome, TaskOutcome::kSucceeded);
  EXPECT_EQ(st.message, "XGBoostJob succeeded: successCondition 'status.replicaStatuses.Master.succeeded > 0' holds");
  obj["status"]["replicaStatuses"]["Master"]["failed"] = 1;  // failure wins
  st = op.ReadStatus(obj);
  EXPECT_EQ(st.outcome, TaskOutcome::kFailed);
  EXPECT_EQ(st.message, "XGBoostJob failed: failureCondition 'status.replicaStatuses.Master.failed > 0' holds");
}

TEST(ResourceOperatorTest, ConfigProblemsNameTheValue) {
  ResourceOperator op;
  StepSpec step;
  step.name = "train";
  step.type = "resource";
  auto problems = [&](const char* config) {
    step.config = Json::parse(config);
    std::vector<std::string> out;
    for (const auto& p : op.CheckConfig(step)) {
      std::string path;
      for (const auto& part : p.path) path += "/" + part;
      out.push_back(path + ": " + p.message);
    }
    return out;
  };
  EXPECT_EQ(problems(R"({"kubernetes": {}})"),
            std::vector<std::string>{": a resource step needs 'resource: {manifest: ...}': the Kubernetes object "
                                     "to create, e.g. manifest: {apiVersion: kubeflow.org/v1, kind: XGBoostJob, "
                                     "spec: {...}}"});
  EXPECT_EQ(problems(R"({"manifest": "kind: MPIJob"})"),
            std::vector<std::string>{"/manifest: 'manifest' must be a mapping (the Kubernetes object), got a string"});
  EXPECT_EQ(problems(R"({"manifest": {"kind": "MPIJob", "metadata": {"name": "x"}}, "succesCondition": "a"})"),
            (std::vector<std::string>{
                "/succesCondition: unknown key 'succesCondition' in resource (known: manifest, successCondition, "
                "failureCondition, plural)",
                "/manifest: the manifest has no 'apiVersion' (e.g. apiVersion: kubeflow.org/v1)",
                "/manifest/metadata/name: remove 'name': sluice names the object after the run, step and attempt, "
                "so a resumed run finds it"}));
  EXPECT_EQ(problems(R"({"manifest": {"apiVersion": "v1", "kind": "{{ params.kind }}"},
                         "successCondition": "status.ok >", "failureCondition": "{{ params.failure }}"})"),
            (std::vector<std::string>{
                "/manifest/kind: 'kind' cannot be a template: it says which API the object is created in, before "
                "the run",
                "/successCondition: successCondition 'status.ok >': column 12: expected a value after '>'"}));
}

TEST(ResourceOperatorTest, ItRunsOnlyOnKubernetes) {
  OperatorRegistry registry;
  ASSERT_TRUE(registry.Register(std::make_unique<ResourceOperator>()).ok());
  EXPECT_EQ(LocalOperator(registry, "resource").error().message(),
            "steps of type 'resource' run only on Kubernetes: run with --executor kubernetes (or set executor: "
            "kubernetes on the step)");
  EXPECT_EQ(OperatorForResource(registry, "mpijobs")->Name(), "resource");
  EXPECT_EQ(PluralOf("MPIJob"), "mpijobs");
  EXPECT_EQ(PluralOf("NetworkPolicy"), "networkpolicies");
  EXPECT_EQ(PluralOf("Ingress"), "ingresses");
  EXPECT_EQ(PluralOf("Gateway"), "gateways");
}

}  // namespace
}  // namespace sluice::operators
