#pragma once
// Smooth weighted round-robin (nginx's algorithm): picks backends in
// proportion to integer weights, interleaved rather than in bursts.
//
// Exactness: over every run of W consecutive picks, where W is the sum of the
// weights, backend i is picked exactly weight_i times (the sequence is
// periodic with period W), and after any n picks backend i's count differs
// from n * weight_i / W by less than the number of backends. So a 10/90 split
// over 10,000 requests is exactly 1,000/9,000.
//
// Not thread-safe: the caller serialises Pick() and Reset() (the canary proxy
// holds its mutex).

#include <cstdint>
#include <optional>
#include <vector>

namespace sluice::serving {

class WeightedPicker {
 public:
  WeightedPicker() = default;
  // `weights` must be non-negative; zero-weight backends are never picked.
  explicit WeightedPicker(std::vector<int64_t> weights);

  // Replaces the weights and restarts the cycle.
  void Reset(std::vector<int64_t> weights);

  // The index of the next backend, or nullopt when every weight is zero
  // (or there are no backends).
  std::optional<size_t> Pick();

  const std::vector<int64_t>& weights() const { return weights_; }

 private:
  std::vector<int64_t> weights_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
};

}  // namespace sluice::serving
