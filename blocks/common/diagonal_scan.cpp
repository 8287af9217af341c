#include "blocks/common/diagonal_scan.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace blocklab {
namespace {

constexpr std::int64_t kRowBlock = 256;  // contiguous rows one thread walks through time together

// Calls body(first_row, end_row) for blocks of the rows [0, rows) of every batch entry, in
// parallel; row r of batch i at time t is element (i * steps + t) * rows + r.
template <typename Body>
void for_row_blocks(std::int64_t batch, std::int64_t rows, const Body& body) {
  const auto blocks = (rows + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, batch * blocks, 1, [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t item = from; item < to; ++item) {
      const auto i = item / blocks, first = (item % blocks) * kRowBlock;
      body(i, first, std::min(rows, first + kRowBlock));
    }
  });
}

// h_t = a_t h_{t-1} + b_t over [batch, steps, rows] (contiguous).
template <typename T>
void scan_forward(const T* a, const T* b, T* h, std::int64_t batch, std::int64_t steps, std::int64_t rows) {
  for_row_blocks(batch, rows, [&](std::int64_t i, std::int64_t first, std::int64_t end) {
    T carry[kRowBlock] = {};
    for (std::int64_t t = 0; t < steps; ++t) {
      const auto at = (i * steps + t) * rows;
      for (std::int64_t r = first; r < end; ++r)
        h[at + r] = carry[r - first] = a[at + r] * carry[r - first] + b[at + r];
    }
  });
}

// G_t = dh_t + a_{t+1} G_{t+1} (backwards in time); da_t = G_t h_{t-1} (0 at t = 0), db_t = G_t.
template <typename T>
void scan_backward(const T* a, const T* h, const T* dh, T* da, T* db, std::int64_t batch, std::int64_t steps,
                   std::int64_t rows) {
  for_row_blocks(batch, rows, [&](std::int64_t i, std::int64_t first, std::int64_t end) {
    T carry[kRowBlock] = {};
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      const auto at = (i * steps + t) * rows, next = at + rows, before = at - rows;
      for (std::int64_t r = first; r < end; ++r) {
        const T g = dh[at + r] + (t + 1 < steps ? a[next + r] * carry[r - first] : T(0));
        carry[r - first] = g;
        db[at + r] = g;
        da[at + r] = t > 0 ? g * h[before + r] : T(0);
      }
    }
  });
}

struct DiagonalScan : torch::autograd::Function<DiagonalScan> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a_in,
                               const torch::Tensor& b_in) {
    const auto a = a_in.contiguous(), b = b_in.contiguous();
    auto h = torch::empty_like(a);
    const auto batch = a.size(0), steps = a.size(1), rows = steps == 0 ? 0 : a.numel() / (batch * steps);
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "diagonal_scan", [&] {
      scan_forward(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), batch, steps, rows);
    });
    ctx->save_for_backward({a, h});
    return h;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!torch::GradMode::is_enabled(), "diagonal_scan: the fused backward is not differentiable again");
    const auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &h = saved[1];
    const auto dh = grads[0].contiguous();
    auto da = torch::empty_like(a), db = torch::empty_like(a);
    const auto batch = a.size(0), steps = a.size(1), rows = steps == 0 ? 0 : a.numel() / (batch * steps);
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "diagonal_scan_backward", [&] {
      scan_backward(a.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(),
                    db.data_ptr<scalar_t>(), batch, steps, rows);
    });
    return {da, db};
  }
};

}  // namespace

torch::Tensor diagonal_scan(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.dim() >= 2, "diagonal_scan: a and b must share one shape [B, L, ...], got ",
              a.sizes(), " and ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "diagonal_scan: a and b must share one floating type");
  if (!a.device().is_cpu()) return diagonal_scan_reference(a, b);  // no fused GPU kernel yet
  return DiagonalScan::apply(a, b);
}

torch::Tensor diagonal_scan_reference(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.dim() >= 2 && a.size(1) >= 1,
              "diagonal_scan_reference: a and b must share one shape [B, L >= 1, ...], got ", a.sizes(), " and ",
              b.sizes());
  std::vector<torch::Tensor> h;
  h.reserve(a.size(1));
  auto carry = torch::zeros_like(b.select(1, 0));
  const auto as = a.unbind(1), bs = b.unbind(1);
  for (std::size_t t = 0; t < as.size(); ++t) h.push_back(carry = as[t] * carry + bs[t]);
  return torch::stack(h, 1);
}

}  // namespace blocklab
