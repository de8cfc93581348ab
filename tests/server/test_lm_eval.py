#!/usr/bin/env python3
"""lm-evaluation-harness (the `lm_eval` package) against dsv2 serve, on dsv2's local tasks (bench/eval):

- local-completions on the two multiple-choice tasks: the harness's acc and acc_norm (and their standard errors)
  equal what `dsv2 eval --task` computes for the same items;
- local-chat-completions on the generation task: the harness's exact_match equals the same metric computed here
  from the server's own greedy answers to the same messages.

    python3 tests/server/test_lm_eval.py --dsv2 build/dsv2 --model models/dsv2-mini [--limit N (default 50)]

Exit code 77 (ctest: skipped) when lm_eval is missing, unless DSV2_REQUIRE_LM_EVAL=1 (set by .ci/run), which
makes that a failure.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import serve_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = None

try:
    import lm_eval  # noqa: F401
except ImportError:
    if os.environ.get("DSV2_REQUIRE_LM_EVAL") == "1":
        print("lm_eval is not installed but DSV2_REQUIRE_LM_EVAL=1: pip install 'lm_eval[api]'")
        sys.exit(1)
    print("lm_eval is not installed (pip install 'lm_eval[api]'): skipping")
    sys.exit(77)


class Server:
    def __init__(self):
        self.proc, port = serve_process.start(ARGS.dsv2, ARGS.model, "--parallel", "4")
        self.url = f"http://127.0.0.1:{port}"

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)

    def stop(self):
        serve_process.stop(self.proc)


def run_harness(model, model_args, tasks, out, *extra):
    """lm_eval run from the repository root (the tasks' data paths are relative to it), offline."""
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=os.path.join(out, "hf"),
               OPENAI_API_KEY="none")
    command = [sys.executable, "-m", "lm_eval", "run", "--model", model, "--model_args", model_args,
               "--tasks", tasks, "--include_path", "bench/eval", "--limit", str(ARGS.limit),
               "--output_path", out, "--log_samples", *extra]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise AssertionError("lm_eval failed:\n" + done.stdout[-3000:] + done.stderr[-3000:])
    results = glob.glob(os.path.join(out, "**", "results_*.json"), recursive=True)
    assert len(results) == 1, results
    with open(results[0], encoding="utf-8") as f:
        return json.load(f)["results"], done.stderr


def samples(out, task):
    files = glob.glob(os.path.join(out, "**", f"samples_{task}_*.jsonl"), recursive=True)
    assert len(files) == 1, files
    with open(files[0], encoding="utf-8") as f:
        return sorted((json.loads(line) for line in f), key=lambda s: s["doc_id"])


class HarnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.model = os.path.basename(os.path.normpath(ARGS.model))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_multiple_choice_accuracy_equals_dsv2_eval(self):
        tasks = {"dsv2_next_sentence_en": "bench/eval/next_sentence_en.jsonl",
                 "dsv2_next_line_zh": "bench/eval/next_line_zh.jsonl"}
        with tempfile.TemporaryDirectory() as out:
            # The tokenizer backend is left to the harness: it finds the server's /tokenize on its own.
            results, log = run_harness("local-completions",
                                       f"base_url={self.server.url}/v1/completions,model={self.model},num_concurrent=4",
                                       ",".join(tasks), out)
            self.assertIn("remote tokenizer", log)
            logged = {task: samples(out, task) for task in tasks}
        command = [ARGS.dsv2, "eval", "-m", ARGS.model, "--limit", str(ARGS.limit), "--json", "-t", "1"]
        for file in tasks.values():
            command += ["--task", file]
        ours = [json.loads(line) for line in subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                                            check=True).stdout.splitlines()]
        for (task, file), mine in zip(tasks.items(), ours):
            theirs = results[task]
            print(f"{task}: harness acc {theirs['acc,none']} acc_norm {theirs['acc_norm,none']}; "
                  f"dsv2 eval acc {mine['acc']} acc_norm {mine['acc_norm']} ({mine['items']} items)")
            self.assertEqual(mine["task"], file)
            self.assertEqual(len(logged[task]), mine["items"])
            self.assertEqual(mine["items"], ARGS.limit)
            self.assertEqual(theirs["acc,none"], mine["acc"], task)
            self.assertEqual(theirs["acc_norm,none"], mine["acc_norm"], task)
            self.assertAlmostEqual(theirs["acc_stderr,none"], mine["acc_stderr"], places=12)
            self.assertAlmostEqual(theirs["acc_norm_stderr,none"], mine["acc_norm_stderr"], places=12)

    def test_chat_generation_equals_the_servers_answers(self):
        task, limit = "dsv2_next_word_chat", min(ARGS.limit, 50)
        with tempfile.TemporaryDirectory() as out:
            results, _ = run_harness("local-chat-completions",
                                     f"base_url={self.server.url}/v1/chat/completions,model={self.model}",
                                     task, out, "--apply_chat_template")
            logged = samples(out, task)
        with open(os.path.join(ROOT, "bench", "eval", "next_word_en.jsonl"), encoding="utf-8") as f:
            docs = [json.loads(line) for line in f][:limit]
        self.assertEqual(len(logged), len(docs))
        # What the task's YAML asks for: the passage as the user's message, greedy, at most 12 tokens, stop at a
        # blank line; the answer's first word, compared ignoring case.
        matches = []
        for doc, sample in zip(docs, logged):
            r = self.server.post("/v1/chat/completions", {
                "model": self.model, "messages": [{"role": "user", "content": doc["context"]}], "max_tokens": 12,
                "temperature": 0, "stop": ["\n\n"], "seed": 1234})
            words = re.findall(r"([A-Za-z']+)", r["choices"][0]["message"]["content"])
            word = words[0].strip() if words else "[invalid]"
            self.assertEqual(sample["filtered_resps"], [word], doc)
            matches.append(float(word.lower() == doc["target"].lower()))
        exact_match = sum(matches) / len(matches)
        print(f"{task}: harness exact_match {results[task]['exact_match,first_word']}, here {exact_match} "
              f"({len(matches)} items)")
        self.assertEqual(results[task]["exact_match,first_word"], exact_match)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsv2", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--limit", type=int, default=50, help="items per task (the harness's --limit)")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
