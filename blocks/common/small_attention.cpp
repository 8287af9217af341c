// Softmax attention for short sequences on CPU (see small_attention.h).
//
// Math, per head (Vaswani et al. 2017, eq. 1), i indexing queries, j keys, c the head width:
//   S = scale Q K^T,  P = softmax_j(S) (row i sees j <= i when causal),  O = P V.
// Backward (the softmax Jacobian identity dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), and
// sum_k P_ik dP_ik = sum_c dO_ic O_ic = D_i as in FlashAttention, Dao et al. 2022,
// arXiv:2205.14135, Alg. 4):
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
//
// Layout. Every product is written as out[r][lanes] += a(r, t) * B[t][lanes]: a broadcast scalar
// times a contiguous vector, so that no product needs a transpose or a horizontal sum:
//   - the N x N products (S and dP) put the query index i in the vector lanes: S^T[j][i] =
//     sum_c K[j][c] Q^T[c][i]; P and dS are stored transposed the same way, P^T[j][i];
//   - the N x d products (O, dV, dQ, dK) put the head width c in the lanes, reading P^T or
//     dS^T as scalars in whichever order the product needs.
// Rows and query lanes are padded to a multiple of 8 (zeros), head rows to a whole vector.
// Each head is packed into a contiguous per-thread scratch, so inputs may have any strides
// (they come from a permuted qkv projection).
//
// SIMD: GCC/Clang vector extensions on 32-byte vectors (8 floats, 4 doubles); on x86-64 with
// GCC the per-head loops are cloned for x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA) and the
// baseline, and the loader picks the clone for the CPU it runs on (target_clones), so the
// shared build needs no -march flag. The float exponential is the Cephes expf polynomial
// (relative error ~1 ulp); float64 uses std::exp.
#include "blocks/common/small_attention.h"

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define BLOCKLAB_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BLOCKLAB_SIMD_CLONES
#endif
#define BLOCKLAB_INLINE inline __attribute__((always_inline))
// Vector arguments of the (always inlined, file-local) helpers: no ABI is crossed.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace blocklab {
namespace {

using i64 = std::int64_t;

template <class T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(32)));
  typedef std::uint32_t U __attribute__((vector_size(32)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(32)));
};
template <class T>
constexpr i64 kLanes = 32 / sizeof(T);
constexpr i64 kPad = 8;  // tokens (rows of P and query lanes) are padded to a multiple of this

i64 round_up(i64 x, i64 m) { return (x + m - 1) / m * m; }

template <class V, class T>
BLOCKLAB_INLINE V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <class T, class V>
BLOCKLAB_INLINE void store(T* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(V));
}
// A broadcast, for constants. (Hot loops write scalar * vector instead, which becomes a
// broadcast load; GCC 12 builds {x, ..., x} of a run-time x lane by lane in the clones.)
template <class V, class T>
BLOCKLAB_INLINE V splat(T x) {
  return V{} + x;
}

template <class To, class From>
BLOCKLAB_INLINE To bitcast(const From& x) {
  static_assert(sizeof(To) == sizeof(From));
  To y;
  __builtin_memcpy(&y, &x, sizeof(To));
  return y;
}

// exp(x) lane-wise for x <= 0 (softmax arguments, x - max), NaN for NaN. Below log(2^-126)
// it returns 2^-126 (~1.2e-38) rather than the subnormal or 0: the probabilities that small
// are 0 to every sum they enter; masked (causal) entries are zeroed by the caller. Cephes
// expf: x = n ln2 + r, |r| <= ln2/2, exp(r) by its degree-6 polynomial (relative error ~1
// ulp), times 2^n built in the exponent bits; n = round(x / ln2) by the 1.5 * 2^23 shifter,
// which leaves the integer in the low mantissa bits.
BLOCKLAB_INLINE Simd<float>::V exp_lanes(const Simd<float>::V& x) {
  using V = Simd<float>::V;
  using U = Simd<float>::U;
  const V lo = splat<V>(-87.33654475f);  // log(2^-126)
  const V shifter = splat<V>(12582912.0f);
  const V xc = lo > x ? lo : x;  // max(x, lo), keeping a NaN x (x86 maxps semantics)
  const V t = xc * 1.44269504088896341f + shifter;
  const V fn = t - shifter;  // n, as a float
  const V r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
  V y = splat<V>(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const U n = bitcast<U>(t) - bitcast<U>(shifter);  // n in [-126, 0], modulo 2^32
  return y * bitcast<V>((n + 127) << 23);
}
BLOCKLAB_INLINE Simd<double>::V exp_lanes(const Simd<double>::V& x) {
  Simd<double>::V y;
  for (int l = 0; l < 4; ++l) y[l] = std::exp(x[l]);
  return y;
}

// A [B, h, N, d] tensor addressed by (b*h + head, token, channel).
template <class T>
struct Heads {
  T* p;
  i64 sb, sh, sn, sc, heads;
  T* head(i64 bh) const { return p + (bh / heads) * sb + (bh % heads) * sh; }
};
template <class T>
Heads<T> heads_of(const torch::Tensor& t) {
  return {t.data_ptr<std::remove_const_t<T>>(), t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.size(1)};
}

template <class T>
struct Shape {
  i64 n, d;  // tokens, head width
  i64 np;    // n rounded up to kPad: rows and query lanes of P^T and dS^T
  i64 dp;    // d rounded up to whole vectors: row stride of the packed heads
  T scale;
  bool causal;
};

// An additive bias on the logits, transposed and padded: bias^T [Bb, Hb, np, np] (Bb in {1, B},
// Hb in {1, h}; a broadcast dimension has stride 0).
template <class T>
struct BiasT {
  const T* p = nullptr;  // nullptr: no bias
  i64 sb = 0, sh = 0, heads = 1;
  const T* head(i64 bh) const { return p + (bh / heads) * sb + (bh % heads) * sh; }
};

template <class T>
struct ForwardArgs {
  Heads<const T> q, k, v;
  Heads<T> out;
  T* probs;  // [B*h, np, np] saved P^T, or nullptr (then per-thread scratch)
  BiasT<T> bias;
  Shape<T> s;
};

template <class T>
struct BackwardArgs {
  Heads<const T> q, k, v, out, dout;
  const T* probs;
  Heads<T> dq, dk, dv;
  T* dbias;  // [B*h, np, np] dS^T (the bias gradient before broadcasting), or nullptr
  Shape<T> s;
};

// dst[i*ld + c] = src(i, c) for i < n, c < d; zero for c in [d, ld) and rows [n, rows).
template <class T>
BLOCKLAB_INLINE void pack_rows(const T* src, i64 sn, i64 sc, i64 n, i64 d, i64 rows, i64 ld, T* dst) {
  for (i64 i = 0; i < n; ++i) {
    T* row = dst + i * ld;
    const T* s = src + i * sn;
    if (sc == 1)
      for (i64 c = 0; c < d; ++c) row[c] = s[c];
    else
      for (i64 c = 0; c < d; ++c) row[c] = s[c * sc];
    for (i64 c = d; c < ld; ++c) row[c] = 0;
  }
  std::fill(dst + n * ld, dst + rows * ld, T(0));
}

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define BLOCKLAB_HAS_SHUFFLE 1
#endif
#endif

#ifdef BLOCKLAB_HAS_SHUFFLE
// In-register transpose of 8 rows of 8 floats into 8 columns (the unpack / shufps / perm2f128
// pattern, which AVX2 does in 24 shuffles).
BLOCKLAB_INLINE void transpose8(Simd<float>::V (&r)[8]) {
  using V = Simd<float>::V;
  V t[8], u[8];
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = __builtin_shufflevector(r[2 * p], r[2 * p + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * p + 1] = __builtin_shufflevector(r[2 * p], r[2 * p + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int p = 0; p < 2; ++p)
    for (int h = 0; h < 2; ++h) {
      u[4 * p + 2 * h] = __builtin_shufflevector(t[4 * p + h], t[4 * p + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[4 * p + 2 * h + 1] = __builtin_shufflevector(t[4 * p + h], t[4 * p + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int c = 0; c < 4; ++c) {
    r[c] = __builtin_shufflevector(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[c + 4] = __builtin_shufflevector(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}
#endif

// dst[c*ld + i] = src(i, c) for c < d, i < n; zero for i in [n, ld). Float rows with unit
// channel stride go through 8 x 8 register transposes, the rest element by element.
template <class T>
BLOCKLAB_INLINE void pack_cols(const T* src, i64 sn, i64 sc, i64 n, i64 d, i64 ld, T* dst) {
  i64 i0 = 0, d8 = 0;
#ifdef BLOCKLAB_HAS_SHUFFLE
  if constexpr (std::is_same_v<T, float>) {
    if (sc == 1) {
      d8 = d / 8 * 8;
      for (; d8 > 0 && i0 + 8 <= n; i0 += 8)
        for (i64 c0 = 0; c0 < d8; c0 += 8) {
          Simd<float>::V r[8];
          for (int k = 0; k < 8; ++k) r[k] = load<Simd<float>::V>(src + (i0 + k) * sn + c0);
          transpose8(r);
          for (int k = 0; k < 8; ++k) store(dst + (c0 + k) * ld + i0, r[k]);
        }
    }
  }
#endif
  for (i64 c = 0; c < d; ++c) {  // what the transposes left: channels >= d8 of their rows, rows >= i0
    T* col = dst + c * ld;
    for (i64 i = c < d8 ? i0 : 0; i < n; ++i) col[i] = src[i * sn + c * sc];
    for (i64 i = n; i < ld; ++i) col[i] = 0;
  }
}

// acc[r] = sum_{c<d} A[r*lda + c] * BT[c*ldb + lanes], r < 8: eight rows of an N x N product
// with the query index in the lanes (8 independent accumulators hide the FMA latency).
template <class T>
BLOCKLAB_INLINE void lane_dot8(const T* A, i64 lda, const T* BT, i64 ldb, i64 d, typename Simd<T>::V (&acc)[8]) {
  using V = typename Simd<T>::V;
  V a[8];
  for (int r = 0; r < 8; ++r) a[r] = V{};
  for (i64 c = 0; c < d; ++c) {
    const V b = load<V>(BT + c * ldb);
    for (int r = 0; r < 8; ++r) a[r] += A[r * lda + c] * b;
  }
  for (int r = 0; r < 8; ++r) acc[r] = a[r];
}

// Stores the first `count` lanes of v to dst with stride sc.
template <class T, class V>
BLOCKLAB_INLINE void store_lanes(T* dst, i64 sc, i64 count, const V& v) {
  if (sc == 1 && count == kLanes<T>) return store(dst, v);
  T tmp[kLanes<T>];
  store(tmp, v);
  for (i64 l = 0; l < count; ++l) dst[l * sc] = tmp[l];
}

// Which terms of a row product are nonzero under the causal mask: all t, t <= r, or t >= r.
enum class Band { full, lower, upper };

// R rows r0.. of out[r][c] = mult * sum_t A[r*ars + t*ats] * B[t*ldb + c], CV vectors of
// channels from c0; t ascending over the band. Rows >= rows are computed but not stored.
template <class T, int R, int CV>
BLOCKLAB_INLINE void row_block(const T* A, i64 ars, i64 ats, const T* B, i64 ldb, i64 tn, Band band, i64 r0, i64 rows,
                               i64 c0, i64 d, T mult, T* dst, i64 dsn, i64 dsc) {
  using V = typename Simd<T>::V;
  constexpr i64 L = kLanes<T>;
  V acc[R][CV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) acc[r][v] = V{};
  const i64 t0 = band == Band::upper ? r0 : 0;
  const i64 t1 = band == Band::lower ? std::min(tn, r0 + R) : tn;
  const T* a = A + r0 * ars;
  for (i64 t = t0; t < t1; ++t) {
    V b[CV];
    for (int v = 0; v < CV; ++v) b[v] = load<V>(B + t * ldb + c0 + v * L);
    const T* at = a + t * ats;
    for (int r = 0; r < R; ++r) {
      const T x = at[r * ars];  // scalar * vector: a broadcast load
      for (int v = 0; v < CV; ++v) acc[r][v] += x * b[v];
    }
  }
  const i64 stored = std::min<i64>(R, rows - r0);
  for (i64 r = 0; r < stored; ++r)
    for (int v = 0; v < CV; ++v)
      store_lanes(dst + (r0 + r) * dsn + (c0 + v * L) * dsc, dsc, std::min(L, d - c0 - v * L), acc[r][v] * mult);
}

// out[r][c] = mult * sum_t A[r*ars + t*ats] B[t*ldb + c] for r < rows, c < d (B rows padded to
// dp channels), written to dst (row stride dsn, channel stride dsc). Register blocks of 4 rows x
// 2 vectors, or 8 rows x 1 vector for the last odd vector (e.g. d = 8 in float): 8
// independent accumulators either way. A must be readable for rows up to round_up(rows, 8).
template <class T>
BLOCKLAB_INLINE void row_product(const T* A, i64 ars, i64 ats, const T* B, i64 ldb, i64 tn, Band band, i64 rows, i64 d,
                                 i64 dp, T mult, T* dst, i64 dsn, i64 dsc) {
  constexpr i64 L = kLanes<T>;
  i64 c0 = 0;
  for (; c0 + 2 * L <= dp; c0 += 2 * L)
    for (i64 r0 = 0; r0 < rows; r0 += 4)
      row_block<T, 4, 2>(A, ars, ats, B, ldb, tn, band, r0, rows, c0, d, mult, dst, dsn, dsc);
  if (c0 < dp)
    for (i64 r0 = 0; r0 < rows; r0 += 8)
      row_block<T, 8, 1>(A, ars, ats, B, ldb, tn, band, r0, rows, c0, d, mult, dst, dsn, dsc);
}

// Per-thread scratch sizes (elements).
template <class T>
i64 forward_scratch(const Shape<T>& s, bool with_probs) {
  return s.d * s.np + 2 * s.np * s.dp + (with_probs ? 0 : s.np * s.np);
}
template <class T>
i64 backward_scratch(const Shape<T>& s) {
  return 4 * s.np * s.dp + s.d * s.np + s.np * s.np + s.np;
}

// One head of the forward: P^T (saved) and O.
template <class T>
BLOCKLAB_INLINE void forward_head(const ForwardArgs<T>& a, i64 bh, T* scratch) {
  using V = typename Simd<T>::V;
  constexpr i64 L = kLanes<T>;
  const auto& s = a.s;
  const i64 n = s.n, d = s.d, np = s.np, dp = s.dp;
  T* qt = scratch;                                          // [d][np]  Q^T, queries in the lanes
  T* kr = qt + d * np;                                      // [np][dp] K rows
  T* vr = kr + np * dp;                                     // [np][dp] V rows
  T* pt = a.probs ? a.probs + bh * np * np : vr + np * dp;  // [np][np] P^T
  pack_cols(a.q.head(bh), a.q.sn, a.q.sc, n, d, np, qt);
  pack_rows(a.k.head(bh), a.k.sn, a.k.sc, n, d, np, dp, kr);
  pack_rows(a.v.head(bh), a.v.sn, a.v.sc, n, d, np, dp, vr);

  T iota_[L];
  for (i64 l = 0; l < L; ++l) iota_[l] = static_cast<T>(l);
  const V iota = load<V>(iota_);
  const V minus_inf = splat<V>(-std::numeric_limits<T>::infinity());
  const T* bias = a.bias.p ? a.bias.head(bh) : nullptr;  // bias^T[j][i]
  for (i64 ib = 0; ib < np; ib += L) {
    // Keys this block of queries sees: all, or j <= i (the causal mask, Vaswani et al. §3.2.3).
    const i64 jend = s.causal ? std::min(n, ib + L) : n;
    T* col = pt + ib;
    // S^T[j][i] = scale sum_c K[j][c] Q[i][c], and the running row maximum (softmax shift).
    V mx = minus_inf;
    for (i64 j0 = 0; j0 < jend; j0 += 8) {
      V acc[8];
      lane_dot8(kr + j0 * dp, dp, qt + ib, np, d, acc);
      for (i64 r = 0; r < 8 && j0 + r < jend; ++r) {
        const i64 j = j0 + r;
        V x = acc[r] * s.scale;
        if (bias) x += load<V>(bias + j * np + ib);
        if (s.causal && j > ib) x = iota + static_cast<T>(ib) >= static_cast<T>(j) ? x : minus_inf;
        mx = mx > x ? mx : x;
        store(col + j * np, x);
      }
    }
    // P = exp(S - max) / sum (the max shift makes exp <= 1; every row sees j = 0, so sum >= 1).
    V sum{};
    for (i64 j = 0; j < jend; ++j) {
      const V x = load<V>(col + j * np);
      V e = exp_lanes(x - mx);
      if (s.causal && j > ib) e = iota + static_cast<T>(ib) >= static_cast<T>(j) ? e : V{};
      if (bias) e = x == minus_inf ? V{} : e;  // a -inf bias: weight 0 (exp_lanes floors at 2^-126)
      sum += e;
      store(col + j * np, e);
    }
    const V inv = T(1) / sum;
    for (i64 j = 0; j < jend; ++j) store(col + j * np, load<V>(col + j * np) * inv);
    for (i64 j = jend; j < np; ++j) store(col + j * np, V{});
  }
  // O[i][c] = sum_j P^T[j][i] V[j][c].
  T* out = a.out.head(bh);
  row_product<T>(pt, 1, np, vr, dp, n, s.causal ? Band::lower : Band::full, n, d, dp, T(1), out, a.out.sn, a.out.sc);
}

// One head of the backward: dQ, dK, dV from dO, the inputs, O and the saved P^T.
template <class T>
BLOCKLAB_INLINE void backward_head(const BackwardArgs<T>& a, i64 bh, T* scratch) {
  using V = typename Simd<T>::V;
  constexpr i64 L = kLanes<T>;
  const auto& s = a.s;
  const i64 n = s.n, d = s.d, np = s.np, dp = s.dp;
  T* qr = scratch;            // [np][dp] Q rows
  T* kr = qr + np * dp;       // [np][dp] K rows
  T* vr = kr + np * dp;       // [np][dp] V rows
  T* dor = vr + np * dp;      // [np][dp] dO rows
  T* dot = dor + np * dp;     // [d][np]  dO^T, queries in the lanes
  T* dst = dot + d * np;      // [np][np] dS^T
  T* rowdot = dst + np * np;  // [np] D_i = sum_c dO[i][c] O[i][c]
  const T* pt = a.probs + bh * np * np;
  pack_rows(a.q.head(bh), a.q.sn, a.q.sc, n, d, np, dp, qr);
  pack_rows(a.k.head(bh), a.k.sn, a.k.sc, n, d, np, dp, kr);
  pack_rows(a.v.head(bh), a.v.sn, a.v.sc, n, d, np, dp, vr);
  const T* dout = a.dout.head(bh);
  pack_rows(dout, a.dout.sn, a.dout.sc, n, d, np, dp, dor);
  pack_cols(dout, a.dout.sn, a.dout.sc, n, d, np, dot);
  const T* out = a.out.head(bh);
  for (i64 i = 0; i < n; ++i) {
    const T* o = out + i * a.out.sn;
    const T* g = dor + i * dp;
    T acc = 0;
    i64 c = 0;
    if (a.out.sc == 1) {  // always, for our own output: whole vectors, then the tail
      V part{};
      for (; c + L <= d; c += L) part += load<V>(g + c) * load<V>(o + c);
      for (i64 l = 0; l < L; ++l) acc += part[l];
    }
    for (; c < d; ++c) acc += g[c] * o[c * a.out.sc];
    rowdot[i] = acc;
  }
  std::fill(rowdot + n, rowdot + np, T(0));

  // dV[j][c] = sum_i P[i][j] dO[i][c] = sum_i P^T[j][i] dO[i][c]  (causal: i >= j).
  row_product<T>(pt, np, 1, dor, dp, n, s.causal ? Band::upper : Band::full, n, d, dp, T(1), a.dv.head(bh), a.dv.sn,
                 a.dv.sc);
  // dS^T[j][i] = P^T[j][i] (dP^T[j][i] - D_i), dP^T[j][i] = sum_c V[j][c] dO[i][c].
  for (i64 ib = 0; ib < np; ib += L) {
    const i64 jend = s.causal ? std::min(n, ib + L) : n;
    const V di = load<V>(rowdot + ib);
    for (i64 j0 = 0; j0 < jend; j0 += 8) {
      V acc[8];
      lane_dot8(vr + j0 * dp, dp, dot + ib, np, d, acc);
      for (i64 r = 0; r < 8 && j0 + r < jend; ++r) {
        const i64 j = j0 + r;
        store(dst + j * np + ib, load<V>(pt + j * np + ib) * (acc[r] - di));
      }
    }
    for (i64 j = jend; j < np; ++j) store(dst + j * np + ib, V{});
  }
  // The bias enters S as is: its gradient is dS (summed over broadcast dimensions by the caller).
  if (a.dbias) std::copy(dst, dst + np * np, a.dbias + bh * np * np);
  // dQ[i][c] = scale sum_j dS[i][j] K[j][c]  (causal: j <= i).
  row_product<T>(dst, 1, np, kr, dp, n, s.causal ? Band::lower : Band::full, n, d, dp, s.scale, a.dq.head(bh), a.dq.sn,
                 a.dq.sc);
  // dK[j][c] = scale sum_i dS[i][j] Q[i][c]  (causal: i >= j).
  row_product<T>(dst, np, 1, qr, dp, n, s.causal ? Band::upper : Band::full, n, d, dp, s.scale, a.dk.head(bh), a.dk.sn,
                 a.dk.sc);
}

// Asks for the rows of one head (into L2) while the previous head computes: heads are
// strided rows of the qkv projection, which the hardware prefetchers see late.
template <class T>
BLOCKLAB_INLINE void prefetch_head(const Heads<T>& t, i64 bh, i64 n, i64 d) {
  const char* p = reinterpret_cast<const char*>(t.head(bh));
  const i64 row_bytes = (d - 1) * t.sc * static_cast<i64>(sizeof(T)) + 1;
  for (i64 i = 0; i < n; ++i)
    for (i64 b = 0; b < row_bytes; b += 64) __builtin_prefetch(p + i * t.sn * static_cast<i64>(sizeof(T)) + b, 0, 2);
}

template <class T>
BLOCKLAB_INLINE void forward_range(const ForwardArgs<T>& a, i64 begin, i64 end, T* scratch) {
  for (i64 bh = begin; bh < end; ++bh) {
    if (bh + 1 < end)
      for (const auto* t : {&a.q, &a.k, &a.v}) prefetch_head(*t, bh + 1, a.s.n, a.s.d);
    forward_head(a, bh, scratch);
  }
}
template <class T>
BLOCKLAB_INLINE void backward_range(const BackwardArgs<T>& a, i64 begin, i64 end, T* scratch) {
  for (i64 bh = begin; bh < end; ++bh) {
    if (bh + 1 < end)
      for (const auto* t : {&a.q, &a.k, &a.v, &a.out, &a.dout}) prefetch_head(*t, bh + 1, a.s.n, a.s.d);
    backward_head(a, bh, scratch);
  }
}

// The ISA clones (target_clones cannot clone templates).
BLOCKLAB_SIMD_CLONES void forward_range_f32(const ForwardArgs<float>& a, i64 begin, i64 end, float* scratch) {
  forward_range(a, begin, end, scratch);
}
BLOCKLAB_SIMD_CLONES void forward_range_f64(const ForwardArgs<double>& a, i64 begin, i64 end, double* scratch) {
  forward_range(a, begin, end, scratch);
}
BLOCKLAB_SIMD_CLONES void backward_range_f32(const BackwardArgs<float>& a, i64 begin, i64 end, float* scratch) {
  backward_range(a, begin, end, scratch);
}
BLOCKLAB_SIMD_CLONES void backward_range_f64(const BackwardArgs<double>& a, i64 begin, i64 end, double* scratch) {
  backward_range(a, begin, end, scratch);
}
void run_range(const ForwardArgs<float>& a, i64 b, i64 e, float* s) { forward_range_f32(a, b, e, s); }
void run_range(const ForwardArgs<double>& a, i64 b, i64 e, double* s) { forward_range_f64(a, b, e, s); }
void run_range(const BackwardArgs<float>& a, i64 b, i64 e, float* s) { backward_range_f32(a, b, e, s); }
void run_range(const BackwardArgs<double>& a, i64 b, i64 e, double* s) { backward_range_f64(a, b, e, s); }

template <class T>
Shape<T> shape_of(const torch::Tensor& q, double scale, bool causal) {
  return {q.size(2), q.size(3), round_up(q.size(2), kPad), round_up(q.size(3), kLanes<T>), static_cast<T>(scale),
          causal};
}

// Heads in parallel on ATen's intra-op threads, a contiguous slice of heads per thread; each
// head is computed by one thread in a fixed order, so the result does not depend on the split
// or the thread count (deterministic).
template <class T, class Args>
void for_heads(const Args& args, i64 bh_total, i64 scratch_elems) {
  const auto run = [&](i64 begin, i64 end) {
    std::vector<T> scratch(static_cast<std::size_t>(scratch_elems));
    run_range(args, begin, end, scratch.data());
  };
  // At least ~2^18 multiply-adds (~0.1 ms) per thread.
  const i64 work = args.s.np * args.s.np * std::max<i64>(args.s.d, 8);
  const i64 grain = std::max<i64>(1, (i64{1} << 18) / work);
  if (bh_total <= grain || at::get_num_threads() == 1 || at::in_parallel_region()) return run(0, bh_total);
#ifdef INTRA_OP_PARALLEL
  at::parallel_for(0, bh_total, grain, run);
#else
  // at::parallel_for is an inline template whose OpenMP body exists only in files compiled
  // with -fopenmp (INTRA_OP_PARALLEL); blocklab is not, so there it would run serially.
  // TensorIterator::for_each is compiled inside libtorch: iterating over the head indices
  // 0..B*h-1 hands each intra-op thread a contiguous range of heads, on ATen's own threads.
  const auto heads = at::arange(bh_total, at::TensorOptions(at::kLong));
  auto iter = at::TensorIteratorConfig().add_const_input(heads).build();
  iter.for_each(
      [&](char** data, const int64_t* strides, int64_t size, int64_t outer) {
        TORCH_INTERNAL_ASSERT(strides[0] == static_cast<int64_t>(sizeof(int64_t)));
        for (int64_t o = 0; o < outer; ++o) {
          const i64 first = *reinterpret_cast<const int64_t*>(data[0] + o * strides[1]);
          run(first, first + size);
        }
      },
      grain);
#endif
}

// [B, h, N, d] with strides of [B, N, h, d]: heads merge into [B, N, h*d] as a view.
torch::Tensor empty_tokens_major(const torch::Tensor& like) {
  const auto B = like.size(0), H = like.size(1), N = like.size(2), D = like.size(3);
  return at::empty_strided({B, H, N, D}, {N * H * D, D, H * D, 1}, like.options());
}

// bias [Bb, Hb, N, N] -> bias^T [Bb, Hb, np, np] in T, zero-padded (the kernel reads it by rows).
torch::Tensor padded_transposed(const torch::Tensor& bias, i64 np) {
  const auto n = bias.size(-1);
  auto out = at::zeros({bias.size(0), bias.size(1), np, np}, bias.options());
  out.narrow(2, 0, n).narrow(3, 0, n).copy_(bias.transpose(-1, -2));
  return out;
}

template <class T>
BiasT<T> bias_of(const torch::Tensor& bias_t, i64 heads) {
  if (!bias_t.defined()) return {};
  const i64 plane = bias_t.size(2) * bias_t.size(3);
  return {bias_t.data_ptr<T>(), bias_t.size(0) > 1 ? bias_t.size(1) * plane : 0, bias_t.size(1) > 1 ? plane : 0, heads};
}

template <class T>
torch::Tensor forward_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const torch::Tensor& bias, double scale, bool causal, torch::Tensor* probs) {
  auto out = empty_tokens_major(q);
  const auto s = shape_of<T>(q, scale, causal);
  const i64 bh = q.size(0) * q.size(1);
  if (probs) *probs = at::empty({bh, s.np, s.np}, q.options());
  if (out.numel() == 0) return out;
  const auto bias_t = bias.defined() ? padded_transposed(bias, s.np) : torch::Tensor();
  ForwardArgs<T> args{heads_of<const T>(q),
                      heads_of<const T>(k),
                      heads_of<const T>(v),
                      heads_of<T>(out),
                      probs ? probs->data_ptr<T>() : nullptr,
                      bias_of<T>(bias_t, q.size(1)),
                      s};
  for_heads<T>(args, bh, forward_scratch(s, probs != nullptr));
  return out;
}

// dq, dk, dv, and with `bias_grad` dS^T [B, h, np, np] (else undefined).
template <class T>
std::array<torch::Tensor, 4> backward_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const torch::Tensor& out, const torch::Tensor& probs,
                                           const torch::Tensor& dout, double scale, bool causal, bool bias_grad) {
  auto dq = empty_tokens_major(q), dk = empty_tokens_major(q), dv = empty_tokens_major(q);
  const auto s = shape_of<T>(q, scale, causal);
  torch::Tensor dbias = bias_grad ? at::zeros({q.size(0), q.size(1), s.np, s.np}, q.options()) : torch::Tensor();
  if (dq.numel() == 0) return {dq.zero_(), dk.zero_(), dv.zero_(), dbias};
  BackwardArgs<T> args{heads_of<const T>(q),
                       heads_of<const T>(k),
                       heads_of<const T>(v),
                       heads_of<const T>(out),
                       heads_of<const T>(dout),
                       probs.data_ptr<T>(),
                       heads_of<T>(dq),
                       heads_of<T>(dk),
                       heads_of<T>(dv),
                       bias_grad ? dbias.data_ptr<T>() : nullptr,
                       s};
  for_heads<T>(args, q.size(0) * q.size(1), backward_scratch(s));
  return {dq, dk, dv, dbias};
}

torch::Tensor forward_dispatch(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& bias, double scale, bool causal, torch::Tensor* probs) {
  return q.scalar_type() == torch::kFloat ? forward_impl<float>(q, k, v, bias, scale, causal, probs)
                                          : forward_impl<double>(q, k, v, bias, scale, causal, probs);
}

class SmallAttentionFunction : public torch::autograd::Function<SmallAttentionFunction> {
 public:
  // bias: [Bb, Hb, N, N] (Bb in {1, B}, Hb in {1, h}) in q's dtype, or an empty placeholder
  // (autograd functions take no undefined inputs).
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& bias_or_empty, double scale, bool causal) {
    const auto bias = bias_or_empty.dim() == 4 ? bias_or_empty : torch::Tensor();
    torch::Tensor probs;
    auto out = forward_dispatch(q, k, v, bias, scale, causal, &probs);
    ctx->save_for_backward({q, k, v, out, probs});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["bias_grad"] = bias.defined() && bias.requires_grad();
    ctx->saved_data["bias_shape"] = bias.defined() ? bias.sizes().vec() : std::vector<std::int64_t>{};
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    // The backward is plain kernels, not differentiable itself (as the CPU flash kernel's).
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "small_attention: double backward (create_graph=true) is not supported; use the reference path "
                "(fused: false)");
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &probs = saved[4];
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool causal = ctx->saved_data["causal"].toBool();
    const bool bias_grad = ctx->saved_data["bias_grad"].toBool();
    const torch::Tensor none;
    if (!grads[0].defined()) return {none, none, none, none, none, none};
    const auto dout = grads[0].to(q.scalar_type());
    const auto g = q.scalar_type() == torch::kFloat
                       ? backward_impl<float>(q, k, v, out, probs, dout, scale, causal, bias_grad)
                       : backward_impl<double>(q, k, v, out, probs, dout, scale, causal, bias_grad);
    torch::Tensor dbias;
    if (bias_grad) {  // dS^T [B, h, np, np] -> dS [B, h, N, N], summed over the bias's broadcast dimensions
      const auto n = q.size(2);
      const auto shape = ctx->saved_data["bias_shape"].toIntVector();
      dbias = g[3].narrow(2, 0, n).narrow(3, 0, n).transpose(-1, -2).sum_to_size(shape);
    }
    return {g[0], g[1], g[2], dbias, none, none};
  }
};

}  // namespace

bool small_attention_supports(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto type = q.scalar_type();
  return q.dim() == 4 && q.sizes() == k.sizes() && q.sizes() == v.sizes() && q.device().is_cpu() &&
         k.device().is_cpu() && v.device().is_cpu() && (type == torch::kFloat || type == torch::kDouble) &&
         k.scalar_type() == type && v.scalar_type() == type && q.layout() == torch::kStrided &&
         k.layout() == torch::kStrided && v.layout() == torch::kStrided;
}

torch::Tensor small_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              bool causal, const torch::Tensor& bias) {
  TORCH_CHECK(small_attention_supports(q, k, v),
              "small_attention: expected q, k, v [B, h, N, d] of one shape, float32 or float64, on CPU; got ",
              q.sizes(), " ", q.scalar_type(), " ", q.device(), ", ", k.sizes(), " ", k.scalar_type(), ", ", v.sizes(),
              " ", v.scalar_type());
  torch::Tensor b;  // [Bb, Hb, N, N]
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() >= 2 && bias.dim() <= 4 && bias.device().is_cpu(),
                "small_attention: the bias must be [N, N], [h, N, N] or [B, h, N, N] on CPU, got ", bias.sizes());
    b = bias.to(q.scalar_type());
    while (b.dim() < 4) b = b.unsqueeze(0);
    const auto n = q.size(2);
    TORCH_CHECK((b.size(0) == 1 || b.size(0) == q.size(0)) && (b.size(1) == 1 || b.size(1) == q.size(1)) &&
                    (b.size(2) == 1 || b.size(2) == n) && b.size(3) == n,
                "small_attention: a bias ", bias.sizes(), " does not broadcast to ", q.sizes().slice(0, 3), " x ", n);
    b = b.expand({b.size(0), b.size(1), n, n});
  }
  const bool grad = at::GradMode::is_enabled() &&
                    (q.requires_grad() || k.requires_grad() || v.requires_grad() || (b.defined() && b.requires_grad()));
  if (!grad) return forward_dispatch(q, k, v, b, scale, causal, nullptr);
  return SmallAttentionFunction::apply(q, k, v, b.defined() ? b : at::empty({0}, q.options()), scale, causal);
}

}  // namespace blocklab
