#include "operators/serving/weighted_picker.h"

#include <utility>

namespace sluice::serving {

WeightedPicker::WeightedPicker(std::vector<int64_t> weights) { Reset(std::move(weights)); }

void WeightedPicker::Reset(std::vector<int64_t> weights) {
  weights_ = std::move(weights);
  current_.assign(weights_.size(), 0);
  total_ = 0;
  for (int64_t& w : weights_) {
    if (w < 0) w = 0;
    total_ += w;
  }
}

std::optional<size_t> WeightedPicker::Pick() {
  if (total_ == 0) return std::nullopt;
  size_t best = 0;
  bool found = false;
  for (size_t i = 0; i < weights_.size(); ++i) {
    if (weights_[i] == 0) continue;
    current_[i] += weights_[i];
    if (!found || current_[i] > current_[best]) {
      best = i;
      found = true;
    }
  }
  current_[best] -= total_;
  return best;
}

}  // namespace sluice::serving
