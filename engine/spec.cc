#include "engine/spec.h"

namespace sluice {

std::string SourceLocation::ToString() const {
  if (file.empty() && line == 0) return "";
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out;
}

const char* ParamTypeName(ParamType type) {
  switch (type) {
    case ParamType::kString: return "string";
    case ParamType::kInt: return "int";
    case ParamType::kNumber: return "number";
    case ParamType::kBool: return "bool";
    case ParamType::kList: return "list";
  }
  return "string";
}

const char* ArtifactTypeName(ArtifactType type) {
  switch (type) {
    case ArtifactType::kDataset: return "dataset";
    case ArtifactType::kModel: return "model";
    case ArtifactType::kMetrics: return "metrics";
    case ArtifactType::kOther: return "other";
  }
  return "other";
}

const StepSpec* PipelineSpec::FindStep(const std::string& step_name) const {
  for (const auto& s : steps)
    if (s.name == step_name) return &s;
  for (const auto& s : finally_steps)
    if (s.name == step_name) return &s;
  return nullptr;
}

const ParamSpec* PipelineSpec::FindParam(const std::string& param_name) const {
  for (const auto& p : params)
    if (p.name == param_name) return &p;
  return nullptr;
}

}  // namespace sluice
