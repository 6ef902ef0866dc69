// sluice schema: prints the pipeline format's JSON Schema, which the build
// embeds from dsl/pipeline.schema.json (the one copy kept in the repository).

#include "engine/cli/pipeline_schema.h"  // generated: kPipelineSchemaJson
#include "engine/cli/tooling_commands.h"

namespace sluice::cli {

const std::string& PipelineSchemaText() {
  static const std::string text(kPipelineSchemaJson);
  return text;
}

}  // namespace sluice::cli
