#include "operators/serving/operator.h"

namespace sluice::serving {

void DeployOperator::AddFixedOutputs(StepSpec* step, const SourceLocation& at) const {
  for (const char* name : {"endpoint", "candidate_url", "version", "model_digest", "traffic_percent", "service"}) {
    bool declared = false;
    for (const auto& p : step->output_params) declared |= p.name == name;
    if (!declared) step->output_params.push_back({name, name, at});
  }
}

void ValidationOperator::AddFixedOutputs(StepSpec* step, const SourceLocation&) const {
  if (!step->metrics_file) step->metrics_file = "metrics.json";
}

}  // namespace sluice::serving
