#!/usr/bin/env python3
"""dsv2 serve --speculative mtp on the fixture with an MTP layer (tests/fixtures/v3_mtp): greedy
answers, whole and streamed, completions and chat, alone and concurrent, equal plain serving's;
sampling options speculative decoding cannot honour are a 400 naming the field. Standard library
only (never skipped).

    python3 tests/server/test_speculative_serve.py --dsv2 build/dsv2 --model tests/fixtures/v3_mtp
"""
import argparse
import concurrent.futures
import json
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

import serve_process

ARGS = None
PROMPTS = ["It was a dark and stormy night", "a", "The quick brown fox jumps over the lazy dog. " * 3,
           "Once upon a time, in a land far away,"]


class Server:
    def __init__(self, *extra):
        self.proc, self.port = serve_process.start(ARGS.dsv2, ARGS.model, "--parallel", "3", *extra)
        self.url = f"http://127.0.0.1:{self.port}"

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def answer(self, path, body):
        """(text, finish_reason) of a whole response."""
        status, text = self.post(path, body)
        assert status == 200, text
        choice = json.loads(text)["choices"][0]
        return (choice["message"]["content"] if "message" in choice else choice["text"]), choice["finish_reason"]

    def streamed(self, path, body):
        """(text, finish_reason) put together from the stream's chunks."""
        status, text = self.post(path, dict(body, stream=True))
        assert status == 200, text
        pieces, reason = [], None
        for line in text.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:])["choices"]:
                pieces.append(choice["delta"].get("content") or "" if "delta" in choice else choice["text"])
                reason = choice.get("finish_reason") or reason
        return "".join(pieces), reason

    def metric(self, name):
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        raise KeyError(name)

    def stop(self):
        serve_process.stop(self.proc)


def requests():
    """Greedy requests of both APIs."""
    out = []
    for i, p in enumerate(PROMPTS):
        out.append(("/v1/completions", {"prompt": p, "max_tokens": 24, "temperature": 0}))
        out.append(("/v1/chat/completions", {"messages": [{"role": "user", "content": p}],
                                             "max_tokens": 16 + i, "temperature": 0}))
    return out


class SpeculativeServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.plain = Server()
        cls.spec = Server("--speculative", "mtp", "--draft", "2")
        cls.expected = [cls.plain.answer(path, body) for path, body in requests()]

    @classmethod
    def tearDownClass(cls):
        cls.plain.stop()
        cls.spec.stop()

    def test_greedy_whole_and_streamed_equal_plain(self):
        before = self.spec.metric("dsv2_speculative_steps_total")
        for (path, body), expected in zip(requests(), self.expected):
            self.assertEqual(self.spec.answer(path, body), expected, (path, body))
            self.assertEqual(self.spec.streamed(path, body), expected, (path, body))
        self.assertGreater(self.spec.metric("dsv2_speculative_steps_total"), before)
        self.assertGreater(self.spec.metric("dsv2_draft_tokens_total"), 0)

    def test_concurrent_requests_equal_plain(self):
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(self.spec.streamed if i % 2 else self.spec.answer, path, body)
                       for i, (path, body) in enumerate(requests())]
            self.assertEqual([f.result() for f in futures], self.expected)

    def test_greedy_with_penalties_equals_plain(self):
        body = {"prompt": PROMPTS[0], "max_tokens": 20, "temperature": 0, "repeat_penalty": 1.3,
                "frequency_penalty": 0.5}
        self.assertEqual(self.spec.answer("/v1/completions", body), self.plain.answer("/v1/completions", body))

    def test_sampling_with_a_penalty_is_a_400_naming_it(self):
        for field, value in [("repeat_penalty", 1.1), ("frequency_penalty", 0.5), ("presence_penalty", -0.5)]:
            for path, body in requests()[:2]:
                status, text = self.spec.post(path, dict(body, temperature=0.8, **{field: value}))
                self.assertEqual(status, 400, text)
                error = json.loads(text)["error"]
                self.assertEqual(error["param"], field)
                self.assertIn("--speculative", error["message"])
            # Plain serving takes them.
            self.assertEqual(self.plain.post(path, dict(body, temperature=0.8, **{field: value}))[0], 200)

    def test_sampling_runs(self):
        status, text = self.spec.post("/v1/completions", {"prompt": PROMPTS[1], "max_tokens": 12, "temperature": 0.9,
                                                          "top_p": 0.9, "seed": 3})
        self.assertEqual(status, 200, text)
        choice = json.loads(text)["choices"][0]
        # The random fixture may sample its end-of-sequence token before the limit.
        self.assertIn(choice["finish_reason"], ("length", "stop"))
        self.assertEqual(json.loads(text)["usage"]["completion_tokens"] == 12, choice["finish_reason"] == "length")


class SpeculativeServeUsageTest(unittest.TestCase):
    def test_help_names_the_options(self):
        r = subprocess.run([ARGS.dsv2, "serve", "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--speculative", r.stdout)
        self.assertIn("--draft", r.stdout)

    def test_bad_values_are_one_line_errors(self):
        for model, extra, code, words in [(ARGS.model, ["--speculative", "eagle"], 2, "--speculative"),
                                          (ARGS.model, ["--speculative", "mtp", "--draft", "0"], 2, "--draft"),
                                          (ARGS.no_mtp_model, ["--speculative", "mtp"], 1, "num_nextn_predict_layers")]:
            r = subprocess.run([ARGS.dsv2, "serve", "-m", model, "--port", "0", *extra], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, code, r.stderr)
            self.assertIn(words, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsv2", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--no-mtp-model", required=True, help="a model without an MTP layer, with tokenizer.json")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)
