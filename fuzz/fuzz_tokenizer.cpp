// libFuzzer target: the first input line (up to a NUL) is tried as a
// tokenizer.json; either way the rest is encoded with the DeepSeek-V2 fixture
// tokenizer and decoded again. Nothing may crash; errors are dsv2::Error.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <unistd.h>
#include <memory>
#include <string>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

#ifndef DSV2_FIXTURES_DIR
#define DSV2_FIXTURES_DIR "tests/fixtures"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tokenizer = dsv2::Tokenizer::load(DSV2_FIXTURES_DIR "/tokenizers/deepseek_v2");
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  if (split != std::string::npos) {  // a candidate tokenizer.json
    static const std::string path = "/tmp/dsv2_fuzz_tokenizer_" + std::to_string(::getpid()) + ".json";
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(input.data(), 1, split, f);
      std::fclose(f);
      try {
        auto t = dsv2::Tokenizer::load(path);
        t->decode(t->encode(input.substr(split + 1), {true, true}));
      } catch (const dsv2::Error&) {
      }
    }
  }
  for (bool special : {false, true}) {
    const auto ids = tokenizer->encode(input, {true, special});
    dsv2::StreamDecoder stream(*tokenizer);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    if (streamed != tokenizer->decode(ids)) __builtin_trap();  // streaming must agree with decode
  }
  return 0;
}
