// The OpenAI request parser: good bodies become CompletionRequests, every bad
// body becomes a 400 naming the field (never another exception, never a crash).
// The expected values come from OpenAI's API reference, not from the parser.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/openai_api.h"

namespace dsv2 {
namespace {

// Parses `body` expecting an ApiError with status 400 whose message contains `needle`.
void expect_bad_request(const std::string& body, bool chat, const std::string& needle) {
  try {
    parse_completion_request(body, chat);
    ADD_FAILURE() << "accepted: " << body;
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-API error for " << body << ": " << e.what();
  }
}

TEST(OpenAIRequest, ParsesAChatRequest) {
  const CompletionRequest r = parse_completion_request(
      R"({"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
          "max_tokens":7,"temperature":0,"top_p":0.5,"seed":3,"stop":["\n\n"],"stream":true,
          "stream_options":{"include_usage":true}})",
      true);
  EXPECT_TRUE(r.chat);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");  // OpenAI's "developer" is the system role
  EXPECT_EQ(r.messages[1].content, "hi");
  EXPECT_EQ(r.max_tokens.value(), 7);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.seed.value(), 3u);
  ASSERT_EQ(r.stop.size(), 1u);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(OpenAIRequest, ParsesACompletionRequestWithDefaults) {
  const CompletionRequest r = parse_completion_request(R"({"prompt":["Once upon"]})", false);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "Once upon");
  EXPECT_FALSE(r.prompts[0].is_ids);
  EXPECT_EQ(r.top_logprobs, -1);
  EXPECT_FALSE(r.echo);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  // Every other control is off unless asked for.
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_EQ(r.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(r.sampling.presence_penalty, 0.0f);
  EXPECT_EQ(r.sampling.repeat_penalty, 1.0f);
  EXPECT_TRUE(r.sampling.logit_bias.empty());
  EXPECT_FALSE(r.stream);
}

TEST(OpenAIRequest, ParsesTheSamplingControls) {
  // OpenAI's penalties and logit_bias (ids as string keys), llama.cpp's top_k, min_p, repeat_penalty, repeat_last_n.
  const CompletionRequest r = parse_completion_request(
      R"({"prompt":"x","frequency_penalty":0.5,"presence_penalty":-1,"logit_bias":{"50256":-100,"7":2.5},
          "top_k":40,"min_p":0.05,"repeat_penalty":1.1,"repeat_last_n":-1})",
      false);
  EXPECT_EQ(r.sampling.frequency_penalty, 0.5f);
  EXPECT_EQ(r.sampling.presence_penalty, -1.0f);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(r.sampling.logit_bias[0].token, 50256);
  EXPECT_EQ(r.sampling.logit_bias[0].bias, -100.0f);
  EXPECT_EQ(r.sampling.logit_bias[1].token, 7);
  EXPECT_EQ(r.sampling.logit_bias[1].bias, 2.5f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_EQ(r.sampling.repeat_penalty, 1.1f);
  EXPECT_EQ(r.sampling.repeat_last_n, -1);
}

TEST(OpenAIRequest, SamplingControlsOutOfRangeAreNamed) {
  expect_bad_request(R"({"prompt":"x","frequency_penalty":2.5})", false,
                     "'frequency_penalty': must be between -2.0 and 2.0");
  expect_bad_request(R"({"prompt":"x","presence_penalty":-3})", false, "'presence_penalty'");
  expect_bad_request(R"({"prompt":"x","presence_penalty":"high"})", false, "'presence_penalty': must be a number");
  expect_bad_request(R"({"prompt":"x","min_p":1.5})", false, "'min_p'");
  expect_bad_request(R"({"prompt":"x","repeat_penalty":0})", false, "'repeat_penalty': must be > 0");
  expect_bad_request(R"({"prompt":"x","repeat_penalty":-1})", false, "'repeat_penalty': must be > 0");
  expect_bad_request(R"({"prompt":"x","repeat_last_n":-2})", false, "'repeat_last_n'");
  expect_bad_request(R"({"prompt":"x","repeat_last_n":1.5})", false, "'repeat_last_n': must be an integer");
  expect_bad_request(R"({"prompt":"x","top_k":-1})", false, "'top_k'");
  expect_bad_request(R"({"prompt":"x","logit_bias":[1]})", false, "'logit_bias': must be an object");
  expect_bad_request(R"({"prompt":"x","logit_bias":{"abc":1}})", false, "'logit_bias': key 'abc' is not a token id");
  expect_bad_request(R"({"prompt":"x","logit_bias":{"-5":1}})", false, "key '-5'");
  expect_bad_request(R"({"prompt":"x","logit_bias":{"99999999999":1}})", false, "key '99999999999'");
  expect_bad_request(R"({"prompt":"x","logit_bias":{"5":"up"}})", false, "the bias of token 5 must be a number");
  expect_bad_request(R"({"prompt":"x","logit_bias":{"5":100.5}})", false, "the bias of token 5 must be in [-100, 100]");
}

TEST(OpenAIRequest, MalformedJsonIsABadRequest) {
  expect_bad_request("{\"prompt\": ", false, "not valid JSON");
  expect_bad_request("", false, "not valid JSON");
  // A number too large for a double is nlohmann's out_of_range, not parse_error
  // (found by the fuzzer: it used to escape as an unhandled exception).
  expect_bad_request("9999e99999}}\n", false, "not valid JSON");
  expect_bad_request(R"({"prompt":"x","temperature":1e999})", false, "not valid JSON");
  expect_bad_request("[1, 2]", true, "must be a JSON object");
}

TEST(OpenAIRequest, WrongFieldsAreNamed) {
  expect_bad_request(R"({"model":"m"})", true, "messages");
  expect_bad_request(R"({"messages":[]})", true, "messages");
  expect_bad_request(R"({"messages":[{"role":"robot","content":"x"}]})", true, "messages[0].role");
  expect_bad_request(R"({"messages":[{"role":"user","content":[{"type":5,"text":"x"}]}]})", true, "messages[0].content");
  expect_bad_request(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", true, "messages[0].content");
  expect_bad_request(R"({"model":"m"})", false, "prompt");
  expect_bad_request(R"({"prompt":"x","max_tokens":0})", false, "max_tokens");
  expect_bad_request(R"({"prompt":"x","max_tokens":1.5})", false, "max_tokens");
  expect_bad_request(R"({"prompt":"x","temperature":2.5})", false, "temperature");
  expect_bad_request(R"({"prompt":"x","top_p":"high"})", false, "top_p");
  expect_bad_request(R"({"prompt":"x","n":2})", false, "n");
  expect_bad_request(R"({"prompt":"x","stop":["a","b","c","d","e"]})", false, "stop");
  expect_bad_request(R"({"prompt":"x","stop":""})", false, "stop");
  expect_bad_request(R"({"prompt":"x","stream":"yes"})", false, "stream");
  expect_bad_request(R"({"prompt":"x","stream_options":{"include_usage":1}})", false, "include_usage");
}

TEST(OpenAIRequest, ParsesEveryShapeOfPrompt) {
  // OpenAI's legacy completions: a string, strings, token ids, arrays of token ids.
  CompletionRequest r = parse_completion_request(R"({"prompt":["a","b"]})", false);
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].text, "b");
  r = parse_completion_request(R"({"prompt":[0,17,2147483647]})", false);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_TRUE(r.prompts[0].is_ids);
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int32_t>{0, 17, 2147483647}));
  r = parse_completion_request(R"({"prompt":[[5,6],[7]]})", false);  // lm-evaluation-harness's shape
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].ids, (std::vector<int32_t>{7}));
  expect_bad_request(R"({"prompt":[]})", false, "'prompt'");
  expect_bad_request(R"({"prompt":[[]]})", false, "'prompt'");
  expect_bad_request(R"({"prompt":[1,"a"]})", false, "'prompt': an array of token ids must hold only integers");
  expect_bad_request(R"({"prompt":[-1]})", false, "token id -1 is not a token id");
  expect_bad_request(R"({"prompt":[2147483648]})", false, "token id 2147483648");
  expect_bad_request(R"({"prompt":[1.5]})", false, "'prompt'");
  expect_bad_request(R"({"prompt":{"text":"a"}})", false, "'prompt'");
  expect_bad_request(R"({"prompt":["a","b"],"stream":true})", false, "several prompts cannot be streamed");
}

TEST(OpenAIRequest, ParsesLogprobsAndEcho) {
  CompletionRequest r = parse_completion_request(R"({"prompt":"x","logprobs":5,"echo":true,"max_tokens":0})", false);
  EXPECT_EQ(r.top_logprobs, 5);
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.max_tokens.value(), 0);  // scores the prompt, generates nothing
  EXPECT_EQ(parse_completion_request(R"({"prompt":"x","logprobs":0})", false).top_logprobs, 0);
  EXPECT_EQ(parse_completion_request(R"({"prompt":"x","logprobs":null})", false).top_logprobs, -1);
  EXPECT_EQ(parse_completion_request(R"({"prompt":"x","logprobs":false})", false).top_logprobs, -1);
  // Chat: logprobs is a boolean, top_logprobs the count (0 unless given).
  const std::string chat = R"({"messages":[{"role":"user","content":"x"}],)";
  EXPECT_EQ(parse_completion_request(chat + R"("logprobs":true})", true).top_logprobs, 0);
  EXPECT_EQ(parse_completion_request(chat + R"("logprobs":true,"top_logprobs":20})", true).top_logprobs, 20);
  EXPECT_EQ(parse_completion_request(chat + R"("logprobs":false})", true).top_logprobs, -1);
}

TEST(OpenAIRequest, BadLogprobsAreNamed) {
  expect_bad_request(R"({"prompt":"x","logprobs":21})", false, "'logprobs': must be an integer between 0 and 20");
  expect_bad_request(R"({"prompt":"x","logprobs":-1})", false, "'logprobs'");
  expect_bad_request(R"({"prompt":"x","logprobs":true})", false, "'logprobs'");
  expect_bad_request(R"({"prompt":"x","logprobs":"5"})", false, "'logprobs': must be an integer");
  expect_bad_request(R"({"prompt":"x","echo":1})", false, "'echo': must be a boolean");
  expect_bad_request(R"({"prompt":"x","max_tokens":0})", false, "'max_tokens': must be at least 1 (0 only with echo)");
  expect_bad_request(R"({"prompt":"x","max_tokens":-1,"echo":true})", false, "'max_tokens': must not be negative");
  const std::string chat = R"({"messages":[{"role":"user","content":"x"}],)";
  expect_bad_request(chat + R"("logprobs":3})", true, "'logprobs': must be a boolean");
  expect_bad_request(chat + R"("top_logprobs":3})", true, "'top_logprobs': needs 'logprobs': true");
  expect_bad_request(chat + R"("logprobs":true,"top_logprobs":21})", true,
                     "'top_logprobs': must be an integer between 0 and 20");
  expect_bad_request(chat + R"("logprobs":true,"top_logprobs":-2})", true, "'top_logprobs'");
}

TEST(OpenAIResponse, LogprobsInTheCompletionsAndChatShapes) {
  CompletionResult result;
  result.text = "Hi!";
  result.finish_reason = "length";
  result.logprobs = {{"<s>", std::nullopt, {}, 0},  // the BOS the server added: not in the text
                     {"Hi", -1.5, {{"Hi", -1.5}, {"Ho", -2.0}}, 0},
                     {"!", -0.25, {{"?", -0.1}}, 2}};
  CompletionRequest r = parse_completion_request(R"({"prompt":"Hi","logprobs":1,"echo":true})", false);
  const nlohmann::json completion = nlohmann::json::parse(completion_response(r, "cmpl-1", 1, {result}));
  const nlohmann::json& lp = completion["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], nlohmann::json({"<s>", "Hi", "!"}));
  EXPECT_EQ(lp["token_logprobs"], nlohmann::json({nullptr, -1.5, -0.25}));
  EXPECT_EQ(lp["text_offset"], nlohmann::json({0, 0, 2}));
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  // OpenAI's legacy top_logprobs also hold the chosen token.
  EXPECT_EQ(lp["top_logprobs"][2], nlohmann::json({{"?", -0.1}, {"!", -0.25}}));
  r = parse_completion_request(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":1})",
                               true);
  result.logprobs.erase(result.logprobs.begin());
  const nlohmann::json chat = nlohmann::json::parse(completion_response(r, "chatcmpl-1", 1, {result}));
  const nlohmann::json& content = chat["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[1]["token"], "!");
  EXPECT_EQ(content[1]["bytes"], nlohmann::json({33}));
  EXPECT_EQ(content[1]["top_logprobs"][0], nlohmann::json({{"token", "?"}, {"logprob", -0.1}, {"bytes", {63}}}));
  EXPECT_TRUE(chat["choices"][0]["logprobs"]["refusal"].is_null());
  // Without logprobs in the request: null.
  r = parse_completion_request(R"({"prompt":"Hi"})", false);
  EXPECT_TRUE(nlohmann::json::parse(completion_response(r, "cmpl-2", 1, {result}))["choices"][0]["logprobs"].is_null());
}

TEST(OpenAIResponse, TokenTextEscapesThePiecesOfASplitCharacter) {
  EXPECT_EQ(token_text("abc"), "abc");
  EXPECT_EQ(token_text("\xE6\x98\x8E"), "\xE6\x98\x8E");  // 明, whole
  EXPECT_EQ(token_text(" \xE6\x98"), " \\xe6\\x98");  // its first two bytes
  EXPECT_EQ(token_text("\x8E!"), "\\x8e!");  // its last byte, then a whole character
  EXPECT_EQ(token_text("\xEF\xBF\xBD"), "\xEF\xBF\xBD");  // a real U+FFFD stays one
}

TEST(OpenAIRequest, StopMatcherHoldsBackOnlyPossibleStopPrefixes) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("hello E"), "hello ");  // "E" might begin "END"
  EXPECT_EQ(m.push("x"), "Ex");
  EXPECT_EQ(m.push("yEN"), "y");
  EXPECT_EQ(m.push("D and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace dsv2
