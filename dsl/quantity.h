#pragma once
// Parsing of the DSL's durations and resource quantities. They live in the
// engine (engine/quantity.h), so the operators parse their configs the same
// way; the dsl:: names are kept for the DSL and the CLI.

#include "engine/quantity.h"

namespace sluice::dsl {

using ::sluice::ParseCpu;
using ::sluice::ParseDuration;
using ::sluice::ParseMemory;

}  // namespace sluice::dsl
