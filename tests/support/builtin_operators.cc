// Registers sluice's built-in step types in OperatorRegistry::Global() before
// any test runs, as the sluice program does first thing in main(). Linked
// into every test program (tests/CMakeLists.txt).
#include "operators/builtin.h"

namespace {

const bool kRegistered = [] {
  sluice::operators::EnsureBuiltinOperators();
  return true;
}();

}  // namespace
