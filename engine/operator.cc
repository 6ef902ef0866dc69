#include "engine/operator.h"

#include <algorithm>

namespace sluice {

std::string LocalProcess::Name() const {
  if (type == "main") return type;
  return type + "-" + std::to_string(index);
}

Result<LocalPlan> Operator::PlanLocal(const Task& task, const PortAllocator&) const {
  return Error(Status::FailedPrecondition("step type '" + std::string(Name()) +
                                          "' runs as a program of its own, not as its own task"));
}

Result<Json> Operator::KubernetesObject(const Task& task, const KubernetesObjectOptions&) const {
  return Error(Status::FailedPrecondition("step type '" + std::string(Name()) +
                                          "' runs as a program of its own, not as its own object"));
}

Status OperatorRegistry::Register(OperatorPtr op) {
  if (Find(op->Name()))
    return Status::AlreadyExists("step type '" + std::string(op->Name()) + "' is already registered");
  if (!op->SectionKey().empty() && FindBySection(op->SectionKey()))
    return Status::AlreadyExists("the step key '" + std::string(op->SectionKey()) +
                                 "' already belongs to step type '" +
                                 std::string(FindBySection(op->SectionKey())->Name()) + "'");
  operators_.push_back(std::move(op));
  return Status::Ok();
}

const Operator* OperatorRegistry::Find(std::string_view type) const {
  for (const auto& op : operators_)
    if (op->Name() == type) return op.get();
  return nullptr;
}

const Operator* OperatorRegistry::FindBySection(std::string_view key) const {
  if (key.empty()) return nullptr;
  for (const auto& op : operators_)
    if (op->SectionKey() == key) return op.get();
  return nullptr;
}

std::vector<std::string> OperatorRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& op : operators_) out.emplace_back(op->Name());
  return out;
}

std::vector<const Operator*> OperatorRegistry::All() const {
  std::vector<const Operator*> out;
  for (const auto& op : operators_) out.push_back(op.get());
  return out;
}

OperatorRegistry& OperatorRegistry::Global() {
  static OperatorRegistry* registry = new OperatorRegistry();  // never destroyed: used until exit
  return *registry;
}

namespace {

// "a, b and c" (local) or "a, b, c" (Kubernetes) of the operators that pass `keep`.
template <class Keep>
std::string Known(const OperatorRegistry& registry, Keep keep, bool with_and) {
  std::vector<std::string> names;
  for (const Operator* op : registry.All())
    if (keep(*op)) names.emplace_back(op->Name());
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += (with_and && i + 1 == names.size()) ? " and " : ", ";
    out += names[i];
  }
  return out;
}

}  // namespace

Result<const Operator*> LocalOperator(const OperatorRegistry& registry, std::string_view type) {
  const Operator* op = registry.Find(type.empty() ? std::string_view("container") : type);
  auto runs_locally = [](const Operator& o) { return !o.RunsOperatorProgram() && !o.KubernetesOnly(); };
  if (op && runs_locally(*op)) return op;
  if (op && op->KubernetesOnly())
    return Error(Status::InvalidArgument("steps of type '" + std::string(type) +
                                         "' run only on Kubernetes: run with --executor kubernetes (or set "
                                         "executor: kubernetes on the step)"));
  return Error(Status::InvalidArgument("the local executor cannot run steps of type '" + std::string(type) +
                                       "'; it runs " + Known(registry, runs_locally, true) + " steps"));
}

Result<const Operator*> KubernetesOperator(const OperatorRegistry& registry, std::string_view type) {
  const Operator* op = registry.Find(type);
  auto has_kind = [](const Operator& o) { return o.Kind().has_value(); };
  if (op && has_kind(*op)) return op;
  return Error(Status::InvalidArgument("step type \"" + std::string(type) + "\" cannot run on Kubernetes (known: " +
                                       Known(registry, has_kind, false) + ")"));
}

const Operator* OperatorForResource(const OperatorRegistry& registry, std::string_view plural) {
  const Operator* any_kind = nullptr;
  for (const Operator* op : registry.All()) {
    auto kind = op->Kind();
    if (kind && kind->plural == plural) return op;
    if (kind && kind->plural.empty() && !any_kind) any_kind = op;
  }
  // A kind no type claims is one a type of any kind (`type: resource`) made.
  return any_kind;
}

}  // namespace sluice
