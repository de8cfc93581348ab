#!/usr/bin/env python3
"""Load test for dsv2 serve: N requests from C concurrent clients (openai
client, streaming off), then one client alone. Reports errors, aggregate
generated tokens/s against a single stream's, latency percentiles, and the
server's resident memory before, in the middle and after (growth = leak).

    python3 bench/serve_load.py --dsv2 build/dsv2 --model models/dsv2-mini \
        --requests 500 --concurrency 16 --max-tokens 32 --parallel 16 [--json]
"""
import argparse
import concurrent.futures
import json
import re
import statistics
import subprocess
import sys
import time

import openai


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsv2", default="build/dsv2")
    ap.add_argument("--model", default="models/dsv2-mini")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    proc = subprocess.Popen([a.dsv2, "serve", "-m", a.model, "--port", "0", "--parallel", str(a.parallel),
                             "-t", str(a.threads), "--queue", str(a.requests)], stderr=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+) ", proc.stderr.readline()).group(1))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
    model = client.models.list().data[0].id
    prompts = ["Tell me about the sea.", "床前明月光，", "It was a dark and stormy night", "The old man said",
               "春眠不觉晓，", "Write a letter to a friend.", "What is the river like?", "In the morning"]

    def one(i):
        start = time.perf_counter()
        try:
            r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
                                               max_tokens=a.max_tokens, temperature=0.8, seed=i)
            return r.usage.completion_tokens, time.perf_counter() - start, None
        except Exception as e:  # counted, reported
            return 0, time.perf_counter() - start, repr(e)

    try:
        one(0)  # warm up
        rss_start = rss_mib(proc.pid)
        results, rss_mid = [], 0.0
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
            for k, r in enumerate(pool.map(one, range(a.requests))):
                results.append(r)
                if k == a.requests // 2:
                    rss_mid = rss_mib(proc.pid)
        wall = time.perf_counter() - start
        rss_end = rss_mib(proc.pid)
        errors = [e for _, _, e in results if e]
        tokens = sum(t for t, _, _ in results)
        latencies = sorted(l for _, l, _ in results)

        single = [one(1000 + i) for i in range(8)]
        single_tps = sum(t for t, _, _ in single) / sum(l for _, l, _ in single)
        report = {
            "requests": a.requests, "concurrency": a.concurrency, "max_tokens": a.max_tokens, "parallel": a.parallel,
            "threads": a.threads, "errors": len(errors), "first_error": errors[0] if errors else None,
            "generated_tokens": tokens, "wall_s": round(wall, 2),
            "aggregate_tokens_per_s": round(tokens / wall, 1), "single_stream_tokens_per_s": round(single_tps, 1),
            "speedup_vs_single_stream": round(tokens / wall / single_tps, 2),
            "latency_p50_s": round(statistics.median(latencies), 3),
            "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "rss_mib_start": round(rss_start, 1), "rss_mib_middle": round(rss_mid, 1), "rss_mib_end": round(rss_end, 1),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if a.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:28} {v}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
