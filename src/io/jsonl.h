// Reading JSON Lines training data: every problem names the file and line.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dsv2 {

// Calls each(line, number) for every line of the files that is not blank, in
// order. An exception `each` throws becomes Error("FILE:LINE: " + its
// message); a file that cannot be opened or read is an Error naming it.
void for_each_jsonl_line(const std::vector<std::string>& files,
                         const std::function<void(const std::string& line, int64_t number)>& each);

}  // namespace dsv2
