// NumPy .npy files (format 1.0, little-endian float32, float64 or int64), so every figure of
// `blocklab attn` can be regenerated in Python: np.load("layer0_probs.npy"), and `blocklab
// block` exchanges arrays with Python reference implementations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace blocklab {

// Writes a C-order array of `shape` atomically; throws std::runtime_error naming the file.
void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const float* data);
void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const double* data);
void write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const std::int64_t* data);

// Reads a float32 .npy written by write_npy (for tests and reloading); throws on anything else.
std::vector<float> read_npy_f32(const std::string& path, std::vector<std::int64_t>& shape);
// Reads a little-endian float32 or float64 .npy (C order) as doubles (float32 values widen
// exactly); `is_float64` tells which it was. Throws std::runtime_error naming the file.
std::vector<double> read_npy_f64(const std::string& path, std::vector<std::int64_t>& shape, bool& is_float64);

}  // namespace blocklab
