// A heatmap of scores in [0, 1] like DeepSeek-V2's needle-in-a-haystack
// figure: one column per context length, one row per needle depth, each cell
// coloured from red (0) through yellow to green (1) with its percentage
// written in it.
#pragma once

#include <string>
#include <vector>

#include "io/png.h"

namespace dsv2 {

struct Heatmap {
  std::string title, x_title, y_title;
  std::vector<std::string> columns, rows;  // labels
  std::vector<double> values;              // [rows, columns], each in [0, 1]; NaN leaves a cell grey
};

RgbImage render_heatmap(const Heatmap& heatmap);

}  // namespace dsv2
