#include "engine/secret_mask.h"

#include <algorithm>

namespace sluice {

std::string MaskValues(std::string_view text, const std::vector<std::string>& values,
                       std::string_view replacement) {
  StreamMasker masker(values, std::string(replacement));
  std::string out = masker.Write(text);
  out += masker.Finish();
  return out;
}

StreamMasker::StreamMasker(std::vector<std::string> values, std::string replacement)
    : replacement_(std::move(replacement)) {
  for (auto& v : values)
    if (!v.empty()) values_.push_back(std::move(v));
  // Longest first, so that a value that contains another is replaced whole.
  std::sort(values_.begin(), values_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  values_.erase(std::unique(values_.begin(), values_.end()), values_.end());
}

std::string StreamMasker::Write(std::string_view chunk) {
  if (values_.empty()) return std::string(chunk);
  pending_.append(chunk);
  return Scan(/*final=*/false);
}

std::string StreamMasker::Finish() {
  std::string out = Scan(/*final=*/true);
  pending_.clear();
  return out;
}

std::string StreamMasker::Scan(bool final) {
  std::string out;
  out.reserve(pending_.size());
  const std::string_view text(pending_);
  size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    bool replaced = false, hold = false;
    for (const auto& v : values_) {
      if (v[0] != rest[0]) continue;
      if (rest.size() >= v.size()) {
        if (rest.compare(0, v.size(), v) == 0) {
          out += replacement_;
          i += v.size();
          replaced = true;
          break;
        }
      } else if (!final && v.compare(0, rest.size(), rest) == 0) {
        // The rest of the buffer is the start of a value (longer than any
        // that could match here): wait for more.
        hold = true;
        break;
      }
    }
    if (replaced) continue;
    if (hold) break;
    out += text[i++];
  }
  pending_.erase(0, i);
  return out;
}

Json RedactSecretParams(const PipelineSpec& spec, Json params) {
  if (!params.is_object()) return params;
  for (const auto& p : spec.params)
    if (p.secret && params.contains(p.name)) params[p.name] = std::string(kRedacted);
  return params;
}

}  // namespace sluice
