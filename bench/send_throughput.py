"""Benchmark 1 — sending throughput: the real sending service versus a bare requests loop.

Both send the same N requests (built by target.build_request) to the emulator (50 ms added
latency, a separate process) at the same concurrency:

- bare: a pooled requests.Session driven by a ThreadPoolExecutor — nothing but HTTP (the
  requests are built before the clock starts, and its connections are opened first);
- service: sending.send_due with everything it does — claims with leases and audit rows, quota
  reservations, the approval-hash check, SendAttempt rows, state changes, daily usage.

They alternate — bare, service, service, bare, half of the updates each time — so a change in
the machine's load during the run weighs on both alike.

Target: service ≥ 0.8 × bare and ≥ 500 updates/s.

    python -m bench.send_throughput --emulator http://127.0.0.1:PORT --updates 20000
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    ATTRIBUTES, create_approved, emit, log, make_connection, make_user, setup_django,
)


class BareLoop:
    """A pooled requests.Session driven by a thread pool: nothing but HTTP."""

    def __init__(self, *, concurrency: int) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=concurrency, max_retries=0)
        self.session.mount("http://", adapter)
        self.pool = ThreadPoolExecutor(max_workers=concurrency)
        self.concurrency = concurrency

    def _send(self, request) -> bool:
        from updates import target

        response = self.session.request(request.method, request.url, data=request.body,
                                        headers=request.headers, timeout=(5, 20),
                                        allow_redirects=False)
        return response.status_code == 200 and response.text.strip() == target.ACKNOWLEDGMENT

    def warm_up(self, requests_: list) -> None:
        # Open the pooled connections first, as the service's long-running worker would have.
        list(self.pool.map(self._send, requests_[: self.concurrency * 2]))

    def send(self, requests_: list) -> tuple[float, float]:
        """Send every request; returns (seconds, CPU seconds of this process)."""
        began, cpu = time.perf_counter(), time.process_time()
        failures = sum(not ok for ok in self.pool.map(self._send, requests_))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        if failures:
            raise SystemExit(f"bare loop: {failures} requests were not acknowledged")
        return elapsed, cpu

    def close(self) -> None:
        self.pool.shutdown()
        self.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulator", required=True, help="Base URL of the running emulator.")
    parser.add_argument("--updates", type=int, default=20_000)
    args = parser.parse_args()

    setup_django()
    from updates.conf import setting

    from updates import sending, target
    from updates.models import ProfileUpdate, UpdateStatus

    concurrency = setting("SEND_CONCURRENCY")
    batch_size = setting("SEND_BATCH_SIZE")
    n = args.updates
    user = make_user("bench-sender")
    conn = make_connection(f"bench{os.getpid()}", base_url=args.emulator)
    log(f"  setting up {n:,} approved updates …")
    create_approved(connection=conn, user=user, count=n, prefix="send")

    requests_ = [
        target.build_request(base_url=conn.effective_base_url, client_code=conn.client_code,
                             identity_type=identity_type, identity=identity, attributes=attributes)
        for identity_type, identity, attributes in ProfileUpdate.objects.filter(connection=conn)
        .order_by("id").values_list("identity_type", "identity", "attributes")
    ]
    # Interleaved bare, service, service, bare (half of the updates each time): a drift in the
    # machine's load during the run weighs on both sides alike.
    half = n // 2
    bare = BareLoop(concurrency=concurrency)
    bare.warm_up(requests_)

    def service(limit: int) -> tuple[float, float]:
        began, cpu = time.perf_counter(), time.process_time()
        run = sending.send_due(connection=conn, limit=limit, worker="bench")
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        if run.acknowledged != limit:
            raise SystemExit(f"service: {run.acknowledged} of {limit} updates acknowledged")
        return seconds, cpu

    log(f"  concurrency {concurrency}, batch size {batch_size}: bare, service, service, bare …")
    timings = {"bare": [bare.send(requests_[:half])], "service": [service(half)]}
    timings["service"].append(service(n - half))
    timings["bare"].append(bare.send(requests_[half:]))
    bare.close()
    bare_seconds, bare_cpu = (sum(t[i] for t in timings["bare"]) for i in (0, 1))
    service_seconds, service_cpu = (sum(t[i] for t in timings["service"]) for i in (0, 1))
    sent = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.SENT).count()
    if sent != n:
        raise SystemExit(f"service: only {sent} of {n} updates were sent")
    bare_rate, service_rate = n / bare_seconds, n / service_seconds
    ratio = service_rate / bare_rate
    # CPU per update (all threads of this process) explains a ratio on a busy machine: with
    # two cores shared with the emulator, the process with more CPU per update saturates first.
    log(f"  bare:    {n:,} in {bare_seconds:.1f} s = {bare_rate:,.0f} updates/s "
        f"({bare_cpu / n * 1000:.2f} ms CPU per update)")
    log(f"  service: {n:,} in {service_seconds:.1f} s = {service_rate:,.0f} updates/s "
        f"({service_cpu / n * 1000:.2f} ms CPU per update)")
    log(f"  ratio service/bare: {ratio:.2f}")
    emit({
        "benchmark": "sending", "updates": n, "concurrency": concurrency, "batch_size": batch_size,
        "attributes_per_update": len(ATTRIBUTES),
        "bare_seconds": bare_seconds, "bare_per_s": bare_rate,
        "service_seconds": service_seconds, "service_per_s": service_rate, "ratio": ratio,
        "bare_cpu_ms_per_update": bare_cpu / n * 1000,
        "service_cpu_ms_per_update": service_cpu / n * 1000,
        "load_average": os.getloadavg(),
        "targets": {"ratio >= 0.8": ratio >= 0.8, "service >= 500/s": service_rate >= 500},
    })


if __name__ == "__main__":
    main()
