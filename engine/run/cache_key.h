#pragma once
// CacheKey: the cache key of one attempt of a step instance.
//
// The key is the hex SHA-256 of a JSON object (the key material) holding the
// operator type, the resolved argv (input paths replaced by their artifacts'
// digests: paths differ per run), the env (minus SLUICE_RUN_ID, the
// SLUICE_INPUT_* paths and cache.envIgnore; a secret variable as "<secret>"),
// the image, the code digest, the operator config, the params the step
// references, the input artifacts' content digests (minus
// cache.ignoreInputs; an input that is no known artifact by its value), the
// foreach item, the declared outputs, the workdir template and the key
// version. A value that reads a secret enters as its secret digest (an HMAC,
// see RunLoop::SecretDigest): a different secret is a different key, and the
// key does not reveal it.
//
// The material's text is written directly (the bytes Json::dump() writes
// for the same object, keys in order): the keys of existing stores depend on
// these exact bytes. Used by the run loop for every attempt and, through it,
// by `sluice plan` (engine/run/cache_explain.h).

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/spec.h"

namespace sluice {

// Everything an attempt's key is computed from; all borrowed, and must
// outlive the CacheKey::Compute call.
struct CacheKeyParts {
  const StepSpec& step;
  const std::vector<std::string>& argv;       // resolved
  const std::vector<bool>& argv_secret;       // argv[i] reads a secret
  const std::map<std::string, std::string>& env;  // resolved, run-specific variables included
  const std::vector<std::string>& secret_env;     // env names holding a secret's value
  const std::set<std::string>& derived_env;       // env names rendered from a secret
  const Json& inputs;                 // input name -> rendered value (path or list of paths)
  const Json& input_digests;          // input name -> artifact digest, list of them, or null
  const std::set<std::string>& secret_inputs;  // inputs whose value reads a secret
  const Json& params;                 // the run's bound params
  const std::vector<std::string>& param_refs;  // the params the step's templates reference
  const std::set<std::string>& secret_params;  // names of the params declared secret
  const std::string& code_digest;     // "sha256:..." of the step's code files, "" for none
  const std::string& config_json;     // the step's operator config, dumped
  const std::string& declared_json;   // DeclaredOutputs(step).dump()
  const Json& item;                   // the foreach item (null for none)
  bool item_secret = false;           // the foreach items come from a secret
};

class CacheKey {
 public:
  // The secret digest of `value` ("<secret:HEX>"), for values that read a
  // secret. Called in a fixed order: params, env, inputs, argv, item.
  using SecretDigest = std::function<std::string(const std::string& value)>;

  // Computes the key of `parts`.
  static CacheKey Compute(const CacheKeyParts& parts, const SecretDigest& digest);

  // The step's declared outputs as the key holds them:
  // {"artifacts": {name: path}, "params": {name: path}, "metrics": file}.
  static Json DeclaredOutputs(const StepSpec& step);

  // The key: 64 hex digits.
  const std::string& key() const { return key_; }
  // The JSON text hashed into key(), with digests in place of secrets.
  const std::string& material_text() const { return material_text_; }

 private:
  std::string key_;
  std::string material_text_;
};

}  // namespace sluice
