// AttentionProbe: records what attention-like mixers attend to.
//
// When a probe is passed in the MixerContext and enabled, every attention-like mixer takes
// its reference (unfused) path and records its probabilities [B, h, N, N] with its layer.
// Blocks record into it; analysis/ reads it (dependencies point one way).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace blocklab {

struct AttentionRecord {
  int layer = -1;
  std::string mixer;     // registry key of the recording mixer
  torch::Tensor probs;   // [B, h, N, N], detached, on CPU
};

class AttentionProbe {
 public:
  bool enabled() const { return enabled_; }
  void enable(bool on = true) { enabled_ = on; }
  void record(int layer, const std::string& mixer, const torch::Tensor& probs) {
    records_.push_back({layer, mixer, probs.detach().to(torch::kCPU)});
  }
  const std::vector<AttentionRecord>& records() const { return records_; }
  void clear() { records_.clear(); }

 private:
  bool enabled_ = false;
  std::vector<AttentionRecord> records_;
};

// True when the mixer should take its reference path and record.
inline bool capturing(const AttentionProbe* probe) { return probe != nullptr && probe->enabled(); }

}  // namespace blocklab
