// AttentionProbe: records what attention-like mixers attend to.
//
// When a probe is passed in the MixerContext and enabled, every attention-like mixer takes
// its reference (unfused) path and records its probabilities [B, h, N, N] with its layer.
// Blocks record into it; analysis/ reads it (dependencies point one way).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "blocks/layout.h"

namespace blocklab {

class TokenMixerImpl;

struct AttentionRecord {
  int layer = -1;
  std::string mixer;     // registry key of the recording mixer
  torch::Tensor probs;   // [B, h, N, N], detached, on CPU
};

// A token mixer's call, kept so analysis can differentiate the mixer at its real input
// (the effective mixing matrix of mixers without attention weights: linear attention, FFT
// mixers, pooling, SSMs).
struct MixerCall {
  std::shared_ptr<TokenMixerImpl> mixer;
  torch::Tensor input;   // [B, N, C], detached
  MixerContext context;  // the layout of the call (without the probe); context.layer is the layer
};

class AttentionProbe {
 public:
  bool enabled() const { return enabled_; }
  void enable(bool on = true) { enabled_ = on; }
  void record(int layer, const std::string& mixer, const torch::Tensor& probs) {
    records_.push_back({layer, mixer, probs.detach().to(torch::kCPU)});
  }
  const std::vector<AttentionRecord>& records() const { return records_; }

  // Off by default: blocks record their mixer's input only when asked (it costs memory).
  void keep_mixer_calls(bool on = true) { keep_mixer_calls_ = on; }
  bool keeps_mixer_calls() const { return enabled_ && keep_mixer_calls_; }
  void record_mixer_call(MixerCall call) { mixer_calls_.push_back(std::move(call)); }
  const std::vector<MixerCall>& mixer_calls() const { return mixer_calls_; }

  void clear() {
    records_.clear();
    mixer_calls_.clear();
  }

 private:
  bool enabled_ = false;
  bool keep_mixer_calls_ = false;
  std::vector<AttentionRecord> records_;
  std::vector<MixerCall> mixer_calls_;
};

// True when the mixer should take its reference path and record.
inline bool capturing(const AttentionProbe* probe) { return probe != nullptr && probe->enabled(); }

}  // namespace blocklab
