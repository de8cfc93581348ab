// The small chat web page served at GET / (one self-contained HTML file).
#pragma once

#include <string>

namespace dsv2 {

const std::string& chat_page_html();

}  // namespace dsv2
