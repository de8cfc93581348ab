// The OpenAI request parser: good bodies become CompletionRequests, every bad
// body becomes a 400 naming the field (never another exception, never a crash).
// The expected values come from OpenAI's API reference, not from the parser.
#include <gtest/gtest.h>

#include <string>

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
  EXPECT_EQ(r.prompt, "Once upon");
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
