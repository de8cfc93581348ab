// Named model shapes for `dsv2 train --preset NAME` (the vocabulary size comes
// from the tokenizer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsv2 {

Config preset_config(const std::string& name, int64_t vocab_size);
std::vector<std::string> preset_names();

}  // namespace dsv2
