// stem/tnt: Transformer in Transformer's embedding, patch tokens with the pixel-level "words" of
// each patch packed after their channels (the tokens block/tnt reads).
//
// Paper: "Transformer in Transformer", Han et al. 2021, arXiv:2103.00112, §2.1-2.2; details as
// in the official code (huawei-noah/Efficient-AI-Backbones tnt_pytorch: PixelEmbed, TNT) and
// timm's tnt.py (non-legacy form). With p = patch, s = word_stride, k = word_kernel:
//   patches  X_i [C_in, p, p]: the image cut into a H/p x W/p grid (row-major)
//   words    w_i = flatten(Conv2d_{C_in -> c, k x k, stride s, padding (k - 1)/2}(X_i)) + E_word,
//            m = ceil(p / s)^2 words of width c per patch (word j at position (j / p', j % p'))
//   outer    o_i = LN(W LN(flatten(w_i)) + b),  W: m c -> C
//            z_0 = [o_cls; o_1; ...; o_N] + E_pos
//   tokens   [z_0 | 0; w_1; ...; w_N]: [B, P + N, C + m c], the class token's word part zero
// TNT-S uses 16 x 16 patches and a 7 x 7 stride-4 convolution (16 words of width 24, C = 384).
// Our defaults are for 28 x 28 Fashion-MNIST: patch 4 (a 7 x 7 grid), a 3 x 3 stride-1
// convolution (16 words per patch, one per pixel with its 3 x 3 neighbourhood), width 8.
//
// The model's dim (StemArgs.dim) is the packed width D = C + m c, so C = dim - m c (the model
// passes one tensor of one width between its parts); block/tnt's words and inner_dim must equal
// the stem's. Initialisation (init_weights, after the model's Linear/LayerNorm init): E_pos,
// E_word and the class token trunc-normal std 0.02 (TNT's code); the convolution keeps PyTorch's
// default. LayerNorm eps 1e-5 (norm_eps; the code's nn.LayerNorm). pos: none drops E_pos and
// E_word; pos_drop applies to the outer tokens (the code's pos_drop on patch_embed).
//
// Shape contract: images [B, C_in, H, W] -> tokens [B, P + (H/p)(W/p), dim] with layout {grid
// H/p x W/p, prefix_tokens P = 1 with a class token, else 0}.
#pragma once

#include "blocks/common/weight_decay.h"
#include "blocks/model.h"
#include "registry/options_schema.h"

namespace blocklab {

struct TntStemOptions {
  TORCH_ARG(std::int64_t, patch) = 4;        // patch side in pixels (default 4)
  TORCH_ARG(std::int64_t, inner_dim) = 8;    // c, the width of a word (default 8)
  TORCH_ARG(std::int64_t, word_kernel) = 3;  // odd kernel of the word convolution (default 3; TNT: 7)
  TORCH_ARG(std::int64_t, word_stride) = 1;  // stride of the word convolution (default 1; TNT: 4)
  TORCH_ARG(std::string, pos) = "learned";   // learned | none: outer and word positions (default learned)
  TORCH_ARG(bool, class_token) = true;       // a learned class token before the patches (default true)
  TORCH_ARG(double, pos_drop) = 0.0;         // dropout on the outer tokens after the positions (default 0)
  TORCH_ARG(double, norm_eps) = 1e-5;        // eps of the outer embedding's LayerNorms (default 1e-5)
};

class TntStemImpl : public StemImpl, public DeclaresNoWeightDecay {
 public:
  static constexpr const char* kKey = "stem/tnt";
  TntStemImpl(const StemArgs& args, const TntStemOptions& options = {});

  Tokens forward(const torch::Tensor& images, const torch::Tensor& lengths = {}) override;
  std::int64_t tokens() const override { return prefix() + grid_h_ * grid_w_; }
  MixerContext layout() const override;
  void init_weights() override;
  // The position tables and the class token: no decay (as TNT's no_weight_decay).
  std::vector<std::string> no_weight_decay() const override;

  std::int64_t prefix() const { return options_.class_token() ? 1 : 0; }
  std::int64_t words() const { return word_side_ * word_side_; }  // m
  std::int64_t outer_dim() const { return outer_dim_; }           // C = dim - m c

  torch::nn::Conv2d word_embed{nullptr};                            // C_in -> c, k x k, stride s, padding (k - 1) / 2
  torch::Tensor word_pos;                                           // [1, m, c] (pos: learned)
  torch::nn::LayerNorm outer_norm1{nullptr}, outer_norm2{nullptr};  // over m c and over C
  torch::nn::Linear outer_proj{nullptr};                            // m c -> C, with bias
  torch::Tensor cls_token;                                          // [1, 1, C] with class_token
  torch::Tensor pos_embed;                                          // [1, P + N, C] (pos: learned)

 private:
  TntStemOptions options_;
  std::int64_t image_h_, image_w_, grid_h_, grid_w_, word_side_, outer_dim_;
};
TORCH_MODULE(TntStem);

const OptionsSchema<TntStemOptions>& tnt_stem_schema();

// Throws ConfigError (located at the option) unless the options fit the images and dim: the
// patch divides H and W, the kernel is odd, and m c = ceil(patch / word_stride)^2 inner_dim < dim.
void check_tnt_stem(const ModelInputs& inputs, std::int64_t dim, const TntStemOptions& options,
                    const ConfigNode& params = {});

}  // namespace blocklab
