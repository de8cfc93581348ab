#!/usr/bin/env python3
"""dsv2 serve against the official `openai` Python client: chat, completions,
streaming, seeds, stop strings, errors in OpenAI's format, API keys, body and
queue limits, client disconnects, prefix reuse, concurrent load, /metrics and
the chat page (in headless Chromium when it is installed).

    python3 tests/server/test_server.py --dsv2 build/dsv2 --model models/dsv2-mini

Exit code 77 (ctest: skipped) when the openai package is missing.
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import serve_process

try:
    import openai
except ImportError:
    print("openai is not installed (pip install openai): skipping")
    sys.exit(77)

ARGS = None


class Server:
    """A dsv2 serve process on a free port."""

    def __init__(self, *extra):
        self.proc, self.port = serve_process.start(ARGS.dsv2, ARGS.model, *extra)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, api_key="none"):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120)

    def raw(self, method, path, body=None, headers=None):
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name):
        _, text = self.raw("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(name)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        serve_process.stop(self.proc)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "4")
        cls.model = os.path.basename(os.path.normpath(ARGS.model))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def chat(self, content, **kw):
        return self.server.client().chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": content}], **kw)

    def test_models_and_health(self):
        self.assertEqual([m.id for m in self.server.client().models.list()], [self.model])
        self.assertEqual(self.server.raw("GET", "/health"), (200, '{"status":"ok"}'))

    def test_chat_completion(self):
        r = self.chat("Tell me a story.", max_tokens=12, temperature=0.7, seed=5)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIsInstance(r.choices[0].message.content, str)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertLessEqual(r.usage.completion_tokens, 12)
        self.assertGreater(r.usage.prompt_tokens, 3)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        # Same seed, same text.
        again = self.chat("Tell me a story.", max_tokens=12, temperature=0.7, seed=5)
        self.assertEqual(again.choices[0].message.content, r.choices[0].message.content)

    def test_streaming_equals_whole_response(self):
        kw = dict(max_tokens=16, temperature=0.8, seed=11)
        whole = self.chat("Once upon a time", **kw).choices[0].message.content
        chunks = list(self.chat("Once upon a time", stream=True, stream_options={"include_usage": True}, **kw))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(len(finish), 1)
        self.assertIsNotNone(chunks[-1].usage)
        self.assertEqual(chunks[-1].choices, [])
        # The raw stream ends with data: [DONE].
        _, raw = self.server.raw("POST", "/v1/chat/completions",
                                 {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True})
        self.assertTrue(raw.rstrip().endswith("data: [DONE]"), raw[-200:])

    def test_completion_and_stop_strings(self):
        c = self.server.client().completions.create(model=self.model, prompt="The king said", max_tokens=24,
                                                    temperature=0, seed=1)
        self.assertEqual(c.object, "text_completion")
        full = c.choices[0].text
        self.assertTrue(full)
        # Stop at the first character of the greedy text that is not its start.
        stop = next((ch for ch in full[1:] if ch.strip()), None)
        self.assertIsNotNone(stop)
        cut = self.server.client().completions.create(model=self.model, prompt="The king said", max_tokens=24,
                                                      temperature=0, stop=[stop])
        self.assertEqual(cut.choices[0].text, full[:full.index(stop, 1)])
        self.assertEqual(cut.choices[0].finish_reason, "stop")
        streamed = "".join(ch.choices[0].text for ch in self.server.client().completions.create(
            model=self.model, prompt="The king said", max_tokens=24, temperature=0, stop=[stop], stream=True))
        self.assertEqual(streamed, cut.choices[0].text)

    def test_errors_in_openai_format(self):
        client = self.server.client()
        with self.assertRaises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(e.exception.body["code"], "model_not_found")
        with self.assertRaises(openai.BadRequestError) as e:
            client.completions.create(model=self.model, prompt="word " * 3000, max_tokens=10)
        self.assertEqual(e.exception.body["code"], "context_length_exceeded")
        self.assertIn("maximum context length", e.exception.body["message"])
        with self.assertRaises(openai.BadRequestError) as e:
            client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "x"}], temperature=5)
        self.assertEqual(e.exception.body["param"], "temperature")
        for body in (b"{not json", b"[1, 2]", json.dumps({"messages": "hi"}).encode(),
                     json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
                     json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(),
                     json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}).encode(),
                     json.dumps({"messages": [{"role": "user", "content": "x"}], "stop": [1]}).encode()):
            status, text = self.server.raw("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            self.assertEqual(status, 400, body)
            self.assertEqual(json.loads(text)["error"]["type"], "invalid_request_error")
        status, text = self.server.raw("POST", "/v1/completions", b"x" * (2 << 20))
        self.assertEqual(status, 413)
        self.assertIn("larger than", json.loads(text)["error"]["message"])
        status, _ = self.server.raw("GET", "/v1/nothing")
        self.assertEqual(status, 404)
        self.assertEqual(self.server.raw("GET", "/health")[0], 200)  # still alive

    def test_sampling_controls(self):
        """OpenAI's logit_bias and penalties, llama.cpp's top_k, min_p, repeat_penalty (extra_body), and 400s
        naming the field for values out of range."""
        ids = subprocess.run([ARGS.dsv2, "tokenize", "-m", ARGS.model, "--no-bos", "--text", " sea"],
                             capture_output=True, text=True, check=True).stdout.split()
        self.assertEqual(len(ids), 1, ids)
        client = self.server.client()
        forced = client.completions.create(model=self.model, prompt="The king said", max_tokens=4, temperature=1.0,
                                           seed=3, logit_bias={ids[0]: 100})
        self.assertEqual(forced.choices[0].text, " sea" * 4)
        chat = self.chat("Tell me a story.", max_tokens=5, temperature=0.7, seed=3, logit_bias={ids[0]: 100})
        self.assertEqual(chat.choices[0].message.content.strip(), "sea sea sea sea sea")
        kw = dict(model=self.model, prompt="The king said", max_tokens=24, temperature=0.9, seed=8)
        plain = client.completions.create(**kw).choices[0].text
        penalised = client.completions.create(frequency_penalty=1.5, presence_penalty=1.0, **kw).choices[0].text
        llama = client.completions.create(extra_body={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.3,
                                                      "repeat_last_n": -1}, **kw).choices[0].text
        self.assertNotEqual(plain, penalised)
        self.assertNotEqual(plain, llama)
        self.assertEqual(client.completions.create(**kw).choices[0].text, plain)  # off unless asked for
        for bad, param in (({"frequency_penalty": 3}, "frequency_penalty"),
                           ({"presence_penalty": -2.5}, "presence_penalty"),
                           ({"logit_bias": {"99999999": 5}}, "logit_bias"),
                           ({"logit_bias": {ids[0]: 101}}, "logit_bias"),
                           ({"extra_body": {"min_p": 2}}, "min_p"),
                           ({"extra_body": {"repeat_penalty": 0}}, "repeat_penalty"),
                           ({"extra_body": {"repeat_last_n": -5}}, "repeat_last_n"),
                           ({"extra_body": {"top_k": -1}}, "top_k")):
            with self.assertRaises(openai.BadRequestError, msg=str(bad)) as e:
                client.completions.create(model=self.model, prompt="x", max_tokens=2, **bad)
            self.assertEqual(e.exception.body["param"], param)
        with self.assertRaises(openai.BadRequestError) as e:
            client.completions.create(model=self.model, prompt="x", max_tokens=2, logit_bias={"99999999": 5})
        self.assertIn("not in the vocabulary", e.exception.body["message"])

    def test_echo_logprobs_equal_those_of_dsv2_logits(self):
        """echo + logprobs + max_tokens 0 scores a prompt: the log-softmax of `dsv2 logits` (float32 logits, double
        arithmetic), the first token's null; tokens, offsets and text as OpenAI's legacy completions give them."""
        prompt = "It was a dark and stormy night; 床前明月光"
        c = self.server.client().completions.create(model=self.model, prompt=prompt, max_tokens=0, echo=True,
                                                    logprobs=3)
        choice = c.choices[0]
        self.assertEqual(choice.text, prompt)
        self.assertEqual(c.usage.completion_tokens, 0)
        lp = choice.logprobs
        ids = [int(x) for x in subprocess.run([ARGS.dsv2, "tokenize", "-m", ARGS.model, "--text", prompt],
                                              capture_output=True, text=True, check=True).stdout.split()]
        self.assertEqual(len(lp.tokens), len(ids))
        self.assertEqual(c.usage.prompt_tokens, len(ids))
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([ARGS.dsv2, "logits", "-m", ARGS.model, "--prompt", prompt, "-o", d + "/l.f32", "-t", "1"],
                           check=True)
            with open(d + "/l.f32", "rb") as f:
                raw = f.read()
        vocab = len(raw) // 4 // len(ids)
        rows = [memoryview(raw)[i * vocab * 4:(i + 1) * vocab * 4].cast("f") for i in range(len(ids))]
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        for i in range(1, len(ids)):
            row = rows[i - 1]
            top = max(row)
            lse = top + math.log(sum(math.exp(x - top) for x in row))
            self.assertAlmostEqual(lp.token_logprobs[i], row[ids[i]] - lse, delta=1e-9)
            best = sorted(range(vocab), key=lambda v: -row[v])[:3]
            # The 3 most likely and the chosen token (OpenAI's legacy top_logprobs hold it too).
            self.assertEqual(set(lp.top_logprobs[i].values()), {row[v] - lse for v in best} | {lp.token_logprobs[i]})
        # The BOS the server added is listed but not part of the text; the other tokens tile it.
        self.assertEqual(lp.tokens[0], "<｜begin▁of▁sentence｜>")
        ends = lp.text_offset[2:] + [len(prompt)]
        pieces = [prompt[a:b] for a, b in zip(lp.text_offset[1:], ends)]
        self.assertEqual("".join(pieces), prompt)
        self.assertEqual([t for t, p in zip(lp.tokens[1:], pieces) if "\\x" not in t],
                         [p for t, p in zip(lp.tokens[1:], pieces) if "\\x" not in t])

    def test_logprobs_of_generated_tokens(self):
        """Completions and chat: the generated tokens' logprobs (greedy: the chosen token is the most likely), in
        each API's shape; streamed chunks carry the same; harness-style token-id prompts, several at once."""
        client = self.server.client()
        c = client.completions.create(model=self.model, prompt="The king said", max_tokens=6, temperature=0, logprobs=2)
        lp = c.choices[0].logprobs
        self.assertEqual(len(lp.tokens), c.usage.completion_tokens)
        self.assertEqual("".join(lp.tokens), c.choices[0].text)
        for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertEqual(len(top), 2)
            self.assertEqual(logprob, max(top.values()))
            self.assertEqual(top[token], logprob)
        streamed = list(client.completions.create(model=self.model, prompt="The king said", max_tokens=6,
                                                  temperature=0, logprobs=2, stream=True))
        self.assertEqual(sum((ch.choices[0].logprobs.tokens for ch in streamed if ch.choices[0].logprobs), []),
                         lp.tokens)
        # Within float32 rounding: the second request reuses the first one's cached prompt.
        for a, b in zip(sum((ch.choices[0].logprobs.token_logprobs for ch in streamed if ch.choices[0].logprobs), []),
                        lp.token_logprobs):
            self.assertAlmostEqual(a, b, delta=1e-5)

        r = self.chat("Tell me a story.", max_tokens=5, temperature=0, logprobs=True, top_logprobs=4)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual(bytes(sum((t.bytes for t in content), [])).decode(), r.choices[0].message.content)
        for t in content:
            self.assertEqual(len(t.top_logprobs), 4)
            self.assertEqual([a.logprob for a in t.top_logprobs], sorted((a.logprob for a in t.top_logprobs),
                                                                         reverse=True))
            self.assertEqual((t.token, t.logprob), (t.top_logprobs[0].token, t.top_logprobs[0].logprob))
        self.assertIsNone(self.chat("Hi", max_tokens=2).choices[0].logprobs)
        chunks = list(self.chat("Tell me a story.", max_tokens=5, temperature=0, logprobs=True, top_logprobs=4,
                                stream=True))
        self.assertEqual([t.token for ch in chunks if ch.choices and ch.choices[0].logprobs
                          for t in ch.choices[0].logprobs.content], [t.token for t in content])

        # lm-evaluation-harness's request: token ids, echo, logprobs 1, max_tokens 1; here two prompts in one.
        status, text = self.server.raw("POST", "/v1/completions", {"prompt": [[1671, 402, 270], [1671]], "echo": True,
                                                                    "logprobs": 1, "max_tokens": 1, "temperature": 0})
        self.assertEqual(status, 200, text)
        choices = json.loads(text)["choices"]
        self.assertEqual([c["index"] for c in choices], [0, 1])
        self.assertEqual([len(c["logprobs"]["tokens"]) for c in choices], [4, 2])
        self.assertIsNone(choices[1]["logprobs"]["token_logprobs"][0])  # no BOS added to token ids

    def test_bad_logprobs_requests_name_the_field(self):
        client = self.server.client()
        for kw, param in (({"logprobs": 21}, "logprobs"), ({"logprobs": -1}, "logprobs"),
                          ({"max_tokens": 0}, "max_tokens"), ({"extra_body": {"echo": "yes"}}, "echo"),
                          ({"prompt": [[5, 99999999]]}, "prompt"), ({"prompt": [[]]}, "prompt")):
            kw = {"prompt": "x", "max_tokens": 2, **kw}
            with self.assertRaises(openai.BadRequestError, msg=str(kw)) as e:
                client.completions.create(model=self.model, **kw)
            self.assertEqual(e.exception.body["param"], param)
        for kw, param in (({"top_logprobs": 3}, "top_logprobs"), ({"logprobs": True, "top_logprobs": 21}, "top_logprobs")):
            with self.assertRaises(openai.BadRequestError) as e:
                self.chat("x", max_tokens=2, **kw)
            self.assertEqual(e.exception.body["param"], param)

    def test_tokenizer_routes(self):
        """vLLM's /tokenize, /detokenize and /tokenizer_info, which lm-evaluation-harness's remote tokenizer uses."""
        status, text = self.server.raw("POST", "/tokenize", {"prompt": "The king<｜end▁of▁sentence｜>",
                                                             "add_special_tokens": False})
        self.assertEqual(status, 200, text)
        tokens = json.loads(text)["tokens"]
        expected = subprocess.run([ARGS.dsv2, "tokenize", "-m", ARGS.model, "--no-bos", "--special", "--text",
                                   "The king<｜end▁of▁sentence｜>"], capture_output=True, text=True, check=True).stdout
        self.assertEqual(tokens, [int(x) for x in expected.split()])
        self.assertEqual(json.loads(self.server.raw("POST", "/tokenize", {"prompt": "a"})[1])["tokens"][0], 0)  # BOS
        status, text = self.server.raw("POST", "/detokenize", {"tokens": tokens})
        self.assertEqual(json.loads(text)["prompt"], "The king<｜end▁of▁sentence｜>")
        info = json.loads(self.server.raw("GET", "/tokenizer_info")[1])
        self.assertEqual((info["bos_token"], info["eos_token"]), ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"))
        self.assertIn("chat_template", info)
        for path, body, param in (("/tokenize", {"text": "a"}, "prompt"), ("/detokenize", {"tokens": [-1]}, "tokens"),
                                  ("/detokenize", {"tokens": [10 ** 9]}, "tokens")):
            status, text = self.server.raw("POST", path, body)
            self.assertEqual(status, 400, text)
            self.assertEqual(json.loads(text)["error"]["param"], param)

    def test_disconnected_client_is_cancelled(self):
        before = self.server.metric('dsv2_requests_total{outcome="cancelled"}')
        body = json.dumps({"messages": [{"role": "user", "content": "Talk forever"}], "max_tokens": 1500,
                           "stream": True, "temperature": 1.0}).encode()
        s = socket.create_connection(("127.0.0.1", self.server.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        s.recv(4096)  # the headers and a first event arrive
        s.close()
        deadline = time.time() + 60
        while time.time() < deadline and self.server.metric('dsv2_requests_total{outcome="cancelled"}') == before:
            time.sleep(0.2)
        self.assertGreater(self.server.metric('dsv2_requests_total{outcome="cancelled"}'), before)
        while time.time() < deadline and self.server.metric("dsv2_active_sequences") > 0:
            time.sleep(0.2)
        self.assertEqual(self.server.metric("dsv2_active_sequences"), 0)

    def test_repeated_prefix_is_reused(self):
        messages = [{"role": "system", "content": "You are a poet who writes about rivers and mountains. " * 8},
                    {"role": "user", "content": "A verse, please."}]
        client = self.server.client()
        client.chat.completions.create(model=self.model, messages=messages, max_tokens=4, temperature=0)
        before = self.server.metric("dsv2_prompt_tokens_reused_total")
        client.chat.completions.create(model=self.model, messages=messages[:1] + [{"role": "user", "content": "Another."}],
                                       max_tokens=4, temperature=0)
        self.assertGreater(self.server.metric("dsv2_prompt_tokens_reused_total") - before, 60)

    def test_concurrent_requests_share_batches(self):
        steps0, rows0 = self.server.metric("dsv2_batch_steps_total"), self.server.metric("dsv2_batch_rows_total")

        def one(i):
            r = self.chat(f"Request {i}: say something.", max_tokens=8, temperature=0.5, seed=i)
            return r.usage.completion_tokens

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            tokens = list(pool.map(one, range(48)))
        self.assertEqual(len(tokens), 48)
        steps = self.server.metric("dsv2_batch_steps_total") - steps0
        rows = self.server.metric("dsv2_batch_rows_total") - rows0
        self.assertGreater(rows / steps, 1.5, "sequences should decode together")
        self.assertIn("dsv2_time_to_first_token_seconds_bucket", self.server.raw("GET", "/metrics")[1])

    def test_chat_page(self):
        status, html = self.server.raw("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("<title>dsv2 chat</title>", html)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if not browser:
            self.skipTest("chromium not installed")
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                  "--virtual-time-budget=30000", "--dump-dom", self.server.url + "/?stream=0&prompt=Hello"],
                                 capture_output=True, text=True, timeout=120).stdout
            replies = re.findall(r'<div class="msg assistant">(.*?)</div>', dom, re.S)
            self.assertIn('class="msg user">Hello</div>', dom)
            self.assertTrue(replies and replies[0].strip(), dom[-2000:])
            if ARGS.screenshot:
                subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                "--virtual-time-budget=30000", "--window-size=900,640", "--hide-scrollbars",
                                f"--screenshot={os.path.abspath(ARGS.screenshot)}",
                                self.server.url + "/?stream=0&prompt=Write%20a%20line%20about%20the%20moon."],
                               capture_output=True, timeout=120)


class LimitsTest(unittest.TestCase):
    def test_template_error_is_a_bad_request(self):
        with tempfile.TemporaryDirectory() as d:
            for name in os.listdir(ARGS.model):
                if name != "tokenizer_config.json":
                    os.symlink(os.path.abspath(os.path.join(ARGS.model, name)), os.path.join(d, name))
            with open(os.path.join(ARGS.model, "tokenizer_config.json"), encoding="utf-8") as f:
                config = json.load(f)
            config["chat_template"] = ("{% for m in messages %}{% if m['role'] == 'assistant' and loop.first %}"
                                       "{{ raise_exception('the first message must not be the assistant') }}"
                                       "{% endif %}{{ m['content'] }}{% endfor %}")
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f, ensure_ascii=False)
            global_model, ARGS.model = ARGS.model, d
            server = Server()
            ARGS.model = global_model
            try:
                status, text = server.raw("POST", "/v1/chat/completions",
                                          {"messages": [{"role": "assistant", "content": "hi"}], "max_tokens": 2})
                self.assertEqual(status, 400)
                self.assertIn("must not be the assistant", json.loads(text)["error"]["message"])
                status, _ = server.raw("POST", "/v1/chat/completions",
                                       {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
                self.assertEqual(status, 200)
            finally:
                server.stop()

    def test_api_key(self):
        server = Server("--api-key", "sekrit")
        try:
            with self.assertRaises(openai.AuthenticationError):
                server.client("wrong").models.list()
            self.assertEqual(server.raw("GET", "/v1/models")[0], 401)
            self.assertEqual(len(server.client("sekrit").models.list().data), 1)
            # The tokenizer routes are guarded too.
            self.assertEqual(server.raw("POST", "/tokenize", {"prompt": "a"})[0], 401)
            self.assertEqual(server.raw("POST", "/tokenize", {"prompt": "a"}, {"Authorization": "Bearer sekrit"})[0], 200)
            self.assertEqual(server.raw("GET", "/health")[0], 200)  # health needs no key
        finally:
            server.stop()

    def test_public_host_without_api_key_warns(self):
        server = Server("--host", "0.0.0.0")
        try:
            line = server.proc.stderr.readline()  # the line after the address line
            self.assertIn("warning: 0.0.0.0 is not a loopback address and no --api-key is set", line)
            self.assertEqual(server.raw("GET", "/health")[0], 200)
        finally:
            server.stop()
        for extra in (("--host", "0.0.0.0", "--api-key", "k"), ("--host", "127.0.0.1")):
            server = Server(*extra)
            self.assertEqual(server.raw("GET", "/health")[0], 200)  # serving (a signal before that would be missed)
            server.proc.terminate()
            rest = server.proc.stderr.read()
            server.stop()
            self.assertNotIn("warning", rest, extra)

    def test_full_queue_is_refused(self):
        server = Server("--parallel", "1", "--queue", "1")
        try:
            body = {"prompt": "Long story", "max_tokens": 400, "temperature": 1.0}

            def post(_):
                return server.raw("POST", "/v1/completions", body)[0]

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                statuses = list(pool.map(post, range(6)))
            self.assertIn(503, statuses)
            self.assertIn(200, statuses)
            self.assertEqual(set(statuses) - {200, 503}, set())
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsv2", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--screenshot", help="also save a screenshot of the chat page here")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
