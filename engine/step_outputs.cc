#include "engine/step_outputs.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <iterator>

#include "engine/json_text.h"
#include "engine/text.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// The file's bytes; nullopt when it is missing or a directory.
std::optional<std::string> ReadRegular(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::string MissingArtifactMessage(const std::string& instance, const std::string& name, const std::string& path) {
  return "step '" + instance + "' declared output artifact '" + name + "' at " + path +
         ", but the file does not exist after the step succeeded";
}

Result<std::string> ReadOutputParam(const std::string& instance, const std::string& workdir, const std::string& name,
                                    const std::string& path) {
  auto text = ReadRegular(fs::path(workdir) / path);
  if (!text) {
    return Error(Status::FailedPrecondition("step '" + instance + "' declared output parameter '" + name + "' at " +
                                            path + ", but the file does not exist after the step succeeded"));
  }
  return std::string(Trim(*text));
}

Result<Json> ReadMetricsFile(const std::string& instance, const std::string& workdir, const std::string& file) {
  auto text = ReadRegular(fs::path(workdir) / file);
  auto fail = [](std::string m) { return Error(Status::FailedPrecondition(std::move(m))); };
  if (!text) {
    return fail("step '" + instance + "' declared a metrics file at " + file +
                ", but the file does not exist after the step succeeded");
  }
  Json m = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) {
    return fail("step '" + instance + "': metrics file " + file +
                " must hold a JSON object of numbers, like {\"accuracy\": 0.93}; got " +
                (m.is_discarded() ? "invalid JSON: " + Ellipsize(std::string(Trim(*text))) : std::string(JsonTypeName(m))));
  }
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_number()) {
      return fail("step '" + instance + "': metrics file " + file + ": '" + it.key() + "' is a " +
                  JsonTypeName(it.value()) + ", expected a number");
    }
  }
  return m;
}

}  // namespace sluice
