#include "io/jsonl.h"

#include <fstream>

#include "core/error.h"

namespace dsv2 {

void for_each_jsonl_line(const std::vector<std::string>& files,
                         const std::function<void(const std::string& line, int64_t number)>& each) {
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(file + ": cannot open");
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        each(line, number);
      } catch (const std::exception& error) {  // a chat template's own failures included
        throw Error(file + ":" + std::to_string(number) + ": " + error.what());
      }
    }
    if (in.bad()) throw Error(file + ": read error");
  }
}

}  // namespace dsv2
