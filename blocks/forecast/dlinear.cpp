#include "blocks/forecast/dlinear.h"

#include "blocks/common/options.h"
#include "blocks/forecast/series_decomp.h"

namespace blocklab {

DLinearImpl::DLinearImpl(const ForecastShape& s, const LtsfOptions& o) : kernel_(o.kernel()) {
  seasonal = register_module("seasonal", TimeLinear(s.lookback, s.horizon, s.channels, o.individual()));
  trend = register_module("trend", TimeLinear(s.lookback, s.horizon, s.channels, o.individual()));
  seasonal->set_weight(1.0 / static_cast<double>(s.lookback));
  trend->set_weight(1.0 / static_cast<double>(s.lookback));
}

torch::Tensor DLinearImpl::forward(const torch::Tensor& x, AttentionProbe*, const torch::Tensor&) {
  const Decomposition d = series_decomp(x, kernel_);
  return seasonal->forward(d.seasonal) + trend->forward(d.trend);
}

namespace {

[[maybe_unused]] const bool BLOCKLAB_UNIQUE(registered_) = register_ltsf<DLinearImpl>(
    "forecast/dlinear", __FILE__, "LTSF-Linear's DLinear: moving-average decomposition, one linear map per part",
    "(s, t) = decomp_k(x); y = W_s s + b_s + W_t t + b_t; W init 1/L", /*with_kernel=*/true);

}  // namespace
}  // namespace blocklab
