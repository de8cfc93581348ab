// The safetensors reader must reject every kind of broken or lying file with a
// message naming the file and the problem, and never read out of bounds.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace dsv2 {
namespace {

std::string make_file(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + header + data;
}

// Expects opening `bytes` as a safetensors file to fail with all `needles` in the message.
void expect_rejected(const std::string& bytes, std::initializer_list<std::string> needles) {
  test::TempDir dir;
  const std::string path = dir.path("bad.safetensors");
  test::write_bytes(path, bytes);
  try {
    SafetensorsFile file(path);
    FAIL() << "accepted a bad file";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    for (const auto& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

TEST(Safetensors, ReadsWhatItWrites) {
  test::TempDir dir;
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t b[2] = {0x3f80, 0xc000};
  write_safetensors(dir.path("ok.safetensors"),
                    {{"a", DType::F32, {2, 3}, a, sizeof a}, {"b", DType::BF16, {2}, b, sizeof b}});
  SafetensorsFile file(dir.path("ok.safetensors"));
  ASSERT_EQ(file.tensors().size(), 2u);
  const TensorInfo* ta = file.find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta->dtype, DType::F32);
  EXPECT_EQ(std::memcmp(ta->data, a, sizeof a), 0);
  EXPECT_EQ(file.find("b")->dtype, DType::BF16);
  EXPECT_EQ(file.find("missing"), nullptr);
}

TEST(Safetensors, RejectsTruncatedFile) { expect_rejected("abc", {"truncated"}); }
TEST(Safetensors, RejectsEmptyFile) { expect_rejected("", {"truncated"}); }

TEST(Safetensors, RejectsHeaderLengthPastEnd) {
  std::string bytes = make_file("{}", "");
  bytes[0] = 100;  // claims a 100-byte header
  expect_rejected(bytes, {"header length 100", "past the end"});
}

TEST(Safetensors, RejectsHugeHeaderLength) {
  std::string bytes = make_file("{}", "");
  bytes[7] = static_cast<char>(0x7f);
  expect_rejected(bytes, {"past the end"});
}

TEST(Safetensors, RejectsMalformedJson) { expect_rejected(make_file("{\"a\": [1, 2", ""), {"not valid JSON"}); }
TEST(Safetensors, RejectsNonObjectHeader) { expect_rejected(make_file("[1, 2]", ""), {"not a JSON object"}); }

TEST(Safetensors, RejectsUnknownDtype) {
  expect_rejected(make_file(R"({"w": {"dtype": "F12", "shape": [1], "data_offsets": [0, 4]}})", "abcd"),
                  {"'w'", "unknown dtype 'F12'"});
}

TEST(Safetensors, RejectsOffsetsPastData) {
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "abcd"),
                  {"'w'", "out of range"});
}

TEST(Safetensors, RejectsReversedOffsets) {
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}})", "abcd"),
                  {"'w'", "out of range"});
}

TEST(Safetensors, RejectsOverlappingTensors) {
  expect_rejected(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            std::string(12, 'x')),
                  {"overlap"});
}

TEST(Safetensors, RejectsSizeMismatch) {
  expect_rejected(make_file(R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 4]}})", "abcd"),
                  {"'w'", "expected 6"});
}

TEST(Safetensors, RejectsNegativeShape) {
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "abcd"),
                  {"'w'", "non-negative"});
}

TEST(Safetensors, RejectsOverflowingShape) {
  expect_rejected(
      make_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})", "abcd"),
      {"'w'", "too large"});
}

TEST(Safetensors, RejectsMissingFields) {
  expect_rejected(make_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd"), {"'dtype'"});
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd"), {"'shape'"});
  expect_rejected(make_file(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd"), {"data_offsets"});
  expect_rejected(make_file(R"({"w": 5})", "abcd"), {"not an object"});
}

TEST(Safetensors, MissingFileIsAnError) {
  EXPECT_THROW(SafetensorsFile("/nonexistent/dir/model.safetensors"), Error);
}

}  // namespace
}  // namespace dsv2
