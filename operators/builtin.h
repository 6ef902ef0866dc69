#pragma once
// The step types sluice ships, registered by the programs that read
// pipelines (sluice, its tests) before anything else runs.

#include "engine/operator.h"
#include "engine/status.h"

namespace sluice::operators {

// Registers container, tfjob, pytorchjob, trainjob, deploy, traffic-validation and
// resource, in that order (the order lint messages list them in). Fails with
// kAlreadyExists when one is already there.
Status RegisterBuiltinOperators(OperatorRegistry& registry);

// RegisterBuiltinOperators(OperatorRegistry::Global()) once per process;
// later calls do nothing.
void EnsureBuiltinOperators();

}  // namespace sluice::operators
