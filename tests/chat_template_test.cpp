// Chat templates rendered by dsv2's Jinja subset must equal Python jinja2's
// rendering as transformers configures it (tools/make_chat_template_fixtures.py).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/chat_template.h"
#include "test_util.h"

namespace dsv2 {
namespace {

TEST(ChatTemplate, MatchesJinja2OnPublishedAndFeatureTemplates) {
  const auto suites = nlohmann::ordered_json::parse(test::read_bytes(test::fixture("chat_templates.json")));
  int checked = 0;
  for (const auto& suite : suites) {
    const ChatTemplate t(suite["template"].get<std::string>());
    for (const auto& c : suite["cases"]) {
      EXPECT_EQ(t.render(c["variables"]), c["expected"].get<std::string>())
          << suite["name"].get<std::string>() << " / " << c["conversation"].get<std::string>()
          << " add_generation_prompt=" << c["variables"]["add_generation_prompt"];
      ++checked;
    }
  }
  EXPECT_GE(checked, 40);
}

TEST(ChatTemplate, BuiltInDeepSeekFormatEqualsTheV2ChatTemplate) {
  const auto suites = nlohmann::ordered_json::parse(test::read_bytes(test::fixture("chat_templates.json")));
  const ChatTemplate t(suites[0]["template"].get<std::string>());
  const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
  EXPECT_EQ(t.render_chat(messages, "<s>", "</s>", true), render_deepseek_chat(messages, "<s>", "</s>", true));
}

TEST(ChatTemplate, ErrorsNameTheProblem) {
  auto message = [](const std::string& source, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object()) {
    try {
      ChatTemplate(source).render(vars);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{% if x %}open").find("endif"), std::string::npos);
  EXPECT_NE(message("{{ 'unterminated }}").find("unclosed"), std::string::npos);
  EXPECT_NE(message("{% macro m() %}{% endmacro %}").find("macro"), std::string::npos);
  EXPECT_NE(message("{{ raise_exception('roles must alternate') }}").find("roles must alternate"), std::string::npos);
  EXPECT_NE(message("{{ x + 'a' }}").find("undefined"), std::string::npos);
  EXPECT_NE(message("{{ 1 +* 2 }}").find("unexpected"), std::string::npos);
  EXPECT_NE(message("{{ 'a' | nosuchfilter }}").find("nosuchfilter"), std::string::npos);
  // Found by the fuzzer: an integer literal past 64 bits used to escape as std::out_of_range.
  EXPECT_NE(message("{{ 99999999999999999999999 }}").find("64 bits"), std::string::npos);
  // Also the fuzzer's: tojson of a key that is not UTF-8 used to throw nlohmann's type_error.
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  vars["m"] = nlohmann::ordered_json::object();
  vars["m"]["\xff"] = 1;
  EXPECT_EQ(ChatTemplate("{{ m | tojson }}").render(vars), "{\"\xEF\xBF\xBD\": 1}");
}

}  // namespace
}  // namespace dsv2
