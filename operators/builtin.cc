#include "operators/builtin.h"

#include <memory>
#include <mutex>

#include "operators/container/container.h"
#include "operators/resource/resource.h"
#include "operators/serving/operator.h"
#include "operators/training/trainjob.h"
#include "operators/training/training.h"

namespace sluice::operators {

Status RegisterBuiltinOperators(OperatorRegistry& registry) {
  std::vector<OperatorPtr> ops;
  ops.push_back(std::make_unique<ContainerOperator>());
  ops.push_back(std::make_unique<TrainingOperator>(TrainingOperator::Flavor::kTensorFlow));
  ops.push_back(std::make_unique<TrainingOperator>(TrainingOperator::Flavor::kPyTorch));
  ops.push_back(std::make_unique<TrainJobOperator>());
  ops.push_back(std::make_unique<serving::DeployOperator>());
  ops.push_back(std::make_unique<serving::ValidationOperator>());
  ops.push_back(std::make_unique<ResourceOperator>());
  for (auto& op : ops)
    if (Status s = registry.Register(std::move(op)); !s.ok()) return s;
  return Status::Ok();
}

void EnsureBuiltinOperators() {
  static std::once_flag once;
  std::call_once(once, [] { (void)RegisterBuiltinOperators(OperatorRegistry::Global()); });
}

}  // namespace sluice::operators
