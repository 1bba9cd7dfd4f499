"""The baseline of the sending benchmark: a bare pooled `requests` loop, as a process of its own.

Reads prepared requests (JSON lines: method, url, body) and sends them with one pooled
requests.Session driven by a ThreadPoolExecutor — nothing but HTTP, no Django. Its whole
process (start-up included) is what bench/send_throughput.py times against `send_updates`.
It also reports the latency it saw per request, which shows whether the endpoint answers at
its configured latency at this rate (or is itself the bottleneck).

    python -m bench.send_bare --requests FILE --concurrency 32 [--skip N] [--count N]
                              [--no-environment]

--no-environment turns requests' trust_env off, as the sender's session does (no proxy
variables or ~/.netrc read again for every request): the tuned reference beside the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from requests.adapters import HTTPAdapter

ACKNOWLEDGMENT = "trueRequest successfully submitted"
RESULT_PREFIX = "BENCH-RESULT "  # as bench.common, without importing Django through it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--no-environment", action="store_true")
    args = parser.parse_args()

    with open(args.requests) as lines:
        prepared = [json.loads(line) for line in lines][args.skip:]
    if args.count is not None:
        prepared = prepared[:args.count]
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=args.concurrency, max_retries=0)
    session.mount("http://", adapter)
    session.trust_env = not args.no_environment

    def send(request: dict) -> tuple[bool, float]:
        began = time.perf_counter()
        body = request["body"].encode("ascii") if request["body"] is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        response = session.request(request["method"], request["url"], data=body,
                                   headers=headers, timeout=(5, 20), allow_redirects=False)
        ok = response.status_code == 200 and response.text.strip() == ACKNOWLEDGMENT
        return ok, time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(send, prepared))
    seconds = time.perf_counter() - began
    failures = sum(not ok for ok, _ in results)
    if failures:
        sys.exit(f"bare loop: {failures} requests were not acknowledged")
    latencies = sorted(latency for _, latency in results)
    print(RESULT_PREFIX + json.dumps({
        "requests": len(results), "loop_seconds": seconds,
        "latency_median_ms": statistics.median(latencies) * 1000,
        "latency_p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
    }), flush=True)


if __name__ == "__main__":
    main()
