#pragma once
// `type: deploy` and `type: traffic-validation`: steps that act on a
// service's traffic (docs/deploy.md). Each runs the sluice-serving program
// with the step's rendered `deploy:` / `validation:` section, as a container
// task (RunsOperatorProgram()); they are never cached.
//
//   deploy               writes the outputs endpoint, candidate_url, version,
//                        model_digest, traffic_percent and service
//   traffic-validation   writes metrics.json (the step's metrics file unless
//                        it names another)

#include "engine/operator.h"

namespace sluice::serving {

class DeployOperator : public Operator {
 public:
  std::string_view Name() const override { return "deploy"; }
  std::string_view SectionKey() const override { return "deploy"; }
  void AddFixedOutputs(StepSpec* step, const SourceLocation& at) const override;
  bool Cacheable() const override { return false; }
  bool RunsOperatorProgram() const override { return true; }
};

class ValidationOperator : public Operator {
 public:
  std::string_view Name() const override { return "traffic-validation"; }
  std::string_view SectionKey() const override { return "validation"; }
  void AddFixedOutputs(StepSpec* step, const SourceLocation& at) const override;
  bool Cacheable() const override { return false; }
  bool RunsOperatorProgram() const override { return true; }
};

}  // namespace sluice::serving
