#include "engine/run/cache_key.h"

#include <algorithm>

#include "engine/json_text.h"
#include "engine/sha256.h"

namespace sluice {
namespace {

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// The params the step references, a secret one as its digest.
Json KeyParams(const CacheKeyParts& p, const CacheKey::SecretDigest& digest) {
  Json out = Json::object();
  for (const auto& name : p.param_refs) {
    if (!p.params.contains(name)) continue;
    const Json& v = p.params[name];
    out[name] = p.secret_params.count(name) > 0 ? Json(digest(v.dump())) : v;
  }
  return out;
}

std::map<std::string, std::string> KeyEnv(const CacheKeyParts& p, const CacheKey::SecretDigest& digest) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : p.env) {
    if (k == "SLUICE_RUN_ID" || k.rfind("SLUICE_INPUT_", 0) == 0) continue;  // run-specific paths
    if (Contains(p.step.cache.env_ignore, k)) continue;
    out.emplace(k, Contains(p.secret_env, k) ? "<secret>" : p.derived_env.count(k) ? digest(v) : v);
  }
  return out;
}

// An input that is not a known artifact is hashed by its value.
Json KeyInputs(const CacheKeyParts& p, const CacheKey::SecretDigest& digest) {
  Json out = Json::object();
  for (auto it = p.input_digests.begin(); it != p.input_digests.end(); ++it) {
    if (Contains(p.step.cache.ignore_inputs, it.key())) continue;
    out[it.key()] = !it.value().is_null()              ? it.value()
                    : p.secret_inputs.count(it.key()) ? Json(digest(p.inputs[it.key()].dump()))
                                                      : p.inputs[it.key()];
  }
  return out;
}

// argv with input paths replaced by their digests: paths differ per run.
std::vector<std::string> KeyArgv(const CacheKeyParts& p, const CacheKey::SecretDigest& digest) {
  std::vector<std::string> out;
  out.reserve(p.argv.size());
  for (size_t i = 0; i < p.argv.size(); ++i) {
    if (p.argv_secret[i]) {
      out.push_back(digest(p.argv[i]));
      continue;
    }
    std::string k = p.argv[i];
    for (const auto& [iname, ivalue] : p.inputs.items()) {
      if (!ivalue.is_string()) continue;
      const std::string path = ivalue.get<std::string>();
      auto d = p.input_digests.find(iname);
      if (path.empty() || d == p.input_digests.end() || !d->is_string()) continue;
      const std::string& to = d->get_ref<const std::string&>();
      size_t pos = 0;
      while ((pos = k.find(path, pos)) != std::string::npos) {
        k.replace(pos, path.size(), to);
        pos += to.size();
      }
    }
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace

CacheKey CacheKey::Compute(const CacheKeyParts& p, const SecretDigest& digest) {
  const Json key_params = KeyParams(p, digest);
  const std::map<std::string, std::string> key_env = KeyEnv(p, digest);
  const Json key_inputs = KeyInputs(p, digest);
  const std::vector<std::string> key_argv = KeyArgv(p, digest);
  JsonObjectText material;
  material.Strings("argv", key_argv)
      .String("code", p.code_digest)
      .Raw("config", p.config_json)
      .StringMap("env", key_env)
      .String("image", p.step.image)
      .Value("inputs", key_inputs)
      .Value("item", p.item_secret ? Json(digest(p.item.dump())) : p.item)
      .String("operator", p.step.type)
      .Raw("outputs", p.declared_json)
      .Value("params", key_params)
      .Int("v", 1)
      .String("workdir", p.step.workdir ? p.step.workdir->text : "");
  CacheKey out;
  out.material_text_ = material.Finish();
  out.key_ = Sha256Hex(out.material_text_);
  return out;
}

Json CacheKey::DeclaredOutputs(const StepSpec& step) {
  Json declared = Json::object();
  for (const auto& a : step.output_artifacts) declared["artifacts"][a.name] = a.path;
  for (const auto& p : step.output_params) declared["params"][p.name] = p.path;
  if (step.metrics_file) declared["metrics"] = *step.metrics_file;
  return declared;
}

}  // namespace sluice
