// matvec_rows and combine_rows (the decode-time absorptions of MLA read one
// head's rows of kv_b_proj through them) against sums over the rows converted
// to float32 by the scalar reference, for every stored weight type; matmul of
// two or three tokens against one token at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "ops/kernels.h"
#include "ops/matmul.h"

namespace dsv2 {
namespace {

// A stored weight type; q8/q4 with float16 block scales (what dsv2 writes) or
// float32 ones (older files).
struct Stored {
  DType dtype;
  DType scale_dtype = DType::F16;
};

// A rows × cols matrix of random values stored as `dtype`, plus its rows
// as the scalar reference converts them back to float32.
struct StoredMatrix {
  std::vector<std::byte> data;
  std::vector<float> scales, dequantized;
  std::vector<uint16_t> f16_scales;
  WeightMatrix w;
};

StoredMatrix make_matrix(Stored stored, int64_t rows, int64_t cols) {
  const DType dtype = stored.dtype;
  const bool f16 = stored.scale_dtype == DType::F16;
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (float& v : values) v = dist(rng);
  StoredMatrix m;
  m.w.dtype = dtype, m.w.rows = rows, m.w.cols = cols;
  m.data.resize(static_cast<size_t>(rows) * stored_columns(dtype, cols) * dtype_size(dtype));
  m.dequantized.resize(values.size());
  const int64_t blocks = cols / kQuantBlock;
  if (is_block_quantized(dtype)) {
    if (f16)
      m.f16_scales.resize(static_cast<size_t>(rows * blocks));
    else
      m.scales.resize(static_cast<size_t>(rows * blocks));
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = values.data() + r * cols;
    float* out = m.dequantized.data() + r * cols;
    std::byte* row = m.data.data() + r * stored_columns(dtype, cols) * dtype_size(dtype);
    BlockScales scales;
    if (!m.f16_scales.empty()) {
      encode_row(dtype, in, cols, row, m.f16_scales.data() + r * blocks);
      scales = BlockScales::half(m.f16_scales.data() + r * blocks);
    } else {
      encode_row(dtype, in, cols, row, m.scales.empty() ? nullptr : m.scales.data() + r * blocks);
      scales = m.scales.empty() ? nullptr : m.scales.data() + r * blocks;
    }
    if (dtype == DType::F32) {
      std::memcpy(out, in, static_cast<size_t>(cols) * sizeof(float));
    } else if (dtype == DType::BF16) {
      for (int64_t c = 0; c < cols; ++c) out[c] = bf16_to_float(reinterpret_cast<const uint16_t*>(row)[c]);
    } else if (dtype == DType::I8) {
      reference::dequantize_row_q8(reinterpret_cast<int8_t*>(row), scales, cols, out);
    } else {
      reference::dequantize_row_q4(reinterpret_cast<uint8_t*>(row), scales, cols, out);
    }
  }
  m.w.data = m.data.data();
  m.w.scale_inv = !m.f16_scales.empty() ? static_cast<const void*>(m.f16_scales.data())
                 : m.scales.empty()      ? nullptr
                                         : m.scales.data();
  m.w.scale_dtype = m.f16_scales.empty() ? DType::F32 : DType::F16;
  m.w.block_rows = 1, m.w.block_cols = kQuantBlock;
  return m;
}

class MatmulRows : public testing::TestWithParam<Stored> {};

TEST_P(MatmulRows, MatVecOverARowRange) {
  const int64_t rows = 10, cols = 96, first = 3, count = 5;
  const StoredMatrix m = make_matrix(GetParam(), rows, cols);
  std::vector<float> x(cols), y(count);
  for (int64_t c = 0; c < cols; ++c) x[c] = std::sin(0.37f * static_cast<float>(c));
  // Block-quantized rows multiply the activation rounded to q8 blocks.
  std::vector<float> x_used = x;
  if (is_block_quantized(GetParam().dtype)) {
    std::vector<int8_t> xq(cols);
    std::vector<float> xs(cols / kQuantBlock);
    quantize_activation_q8(x.data(), cols, xq.data(), xs.data());
    reference::dequantize_row_q8(xq.data(), xs.data(), cols, x_used.data());
  }
  matvec_rows(m.w, first, count, x.data(), y.data());
  for (int64_t i = 0; i < count; ++i) {
    double expected = 0.0, magnitude = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      expected += static_cast<double>(x_used[c]) * m.dequantized[(first + i) * cols + c];
      magnitude += std::fabs(static_cast<double>(x_used[c]) * m.dequantized[(first + i) * cols + c]);
    }
    EXPECT_NEAR(y[i], expected, 1e-5 * magnitude + 1e-7) << "row " << first + i;
  }
}

TEST_P(MatmulRows, CombinationOfARowRange) {
  const int64_t rows = 10, cols = 96, first = 2, count = 7;
  const StoredMatrix m = make_matrix(GetParam(), rows, cols);
  std::vector<float> coefficients(count), y(cols, 123.0f);  // y is overwritten, not accumulated into
  for (int64_t i = 0; i < count; ++i) coefficients[i] = 0.5f - 0.21f * static_cast<float>(i);
  combine_rows(m.w, first, count, coefficients.data(), y.data());
  for (int64_t c = 0; c < cols; ++c) {
    double expected = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      expected += static_cast<double>(coefficients[i]) * m.dequantized[(first + i) * cols + c];
      magnitude += std::fabs(static_cast<double>(coefficients[i]) * m.dequantized[(first + i) * cols + c]);
    }
    EXPECT_NEAR(y[c], expected, 1e-5 * magnitude + 1e-7) << "column " << c;
  }
}

// Two or three tokens (a speculative verification step, a small batch): each token's outputs are
// exactly what one token alone gets, for every stored type (q8/q4: the integer kernel, per token,
// over rows still in cache), with more rows than a block of them (16) and a ragged last block.
TEST_P(MatmulRows, FewTokensEqualOneTokenEach) {
  const int64_t rows = 37, cols = 96;
  const StoredMatrix m = make_matrix(GetParam(), rows, cols);
  for (int64_t tokens : {2, 3}) {
    std::vector<float> x(tokens * cols), y(tokens * rows), one(rows);
    for (int64_t i = 0; i < tokens * cols; ++i) x[i] = std::sin(0.37f * static_cast<float>(i) + 0.1f);
    matmul(x.data(), tokens, m.w, y.data());
    for (int64_t t = 0; t < tokens; ++t) {
      matmul(x.data() + t * cols, 1, m.w, one.data());
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(y[t * rows + r], one[r]) << tokens << " tokens, token " << t << ", row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(StoredTypes, MatmulRows,
                         testing::Values(Stored{DType::F32}, Stored{DType::BF16}, Stored{DType::I8}, Stored{DType::U8},
                                         Stored{DType::I8, DType::F32}, Stored{DType::U8, DType::F32}),
                         [](const testing::TestParamInfo<Stored>& info) {
                           const bool quantized = is_block_quantized(info.param.dtype);
                           return dtype_name(info.param.dtype) + (quantized ? "_" + dtype_name(info.param.scale_dtype) + "Scales" : "");
                         });

}  // namespace
}  // namespace dsv2
