"""The one wall-clock deadline mechanism: for each HTTP call to Target (connect, send, headers and
body together) and for each webhook an alert posts (webhooks.py).

`timeout=(connect, read)` bounds each socket operation, not the call: a server that sends one
byte a second never lets a single read wait long, and held one profile read 12–30 s. Reading the
body in chunks with a deadline check does not help either — the headers are read inside
`Session.send`, and urllib3 reads a body chunk until it is full or the answer ends (a drip
delivers neither) — and urllib3's `Timeout(total=...)` only shortens the per-operation read
timeout, once.

So a watchdog does it: each call runs inside `bounded(until)`, the connection classes mounted by
`DeadlineAdapter` hand their socket to the current call, and one daemon thread per process shuts
that socket down (`shutdown(SHUT_RDWR)`) once the call's deadline has passed. The blocked read
returns at once, the call fails, and `bounded` raises `DeadlineExceeded` (a requests `Timeout`,
so callers treat it as a timeout: transient for a send, "not read" for a read). Cost per call: a
thread-local and three short lock holds; the thread wakes every TICK_SECONDS only while calls are
running. The deadline is enforced to within TICK_SECONDS.

Connecting is left to the connect timeout (urllib3 connects before a socket exists to watch);
a socket that connects after the deadline is shut down at once.

A caller with sockets of its own (webhooks.post_json dials the address it checked) runs inside
`bounded` too and hands each socket to the watchdog with `watch`; `Deadline` gives the time left
for the steps before there is a socket (resolving, connecting) and for each socket timeout.
"""

from __future__ import annotations

import socket
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

TICK_SECONDS = 0.05


class DeadlineExceeded(requests.exceptions.Timeout, TimeoutError):
    """The call did not end within its wall-clock deadline; its connection was shut down."""


class Deadline:
    """A call's deadline, `seconds` from now: `until` for `bounded`, `left()` for each step."""

    __slots__ = ("seconds", "until")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self.until

    def left(self) -> float:
        """The seconds left; DeadlineExceeded when there are none."""
        left = self.until - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no answer within {self.seconds:g} s")
        return left


class _Call:
    __slots__ = ("until", "sock", "expired")

    def __init__(self, until: float) -> None:
        self.until = until
        self.sock: socket.socket | None = None
        self.expired = False


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._calls: set[_Call] = set()
        # socket id -> the call now using it: a pooled connection another call took over (its
        # first call was over, only not yet left) is never shut down for the first one.
        self._owners: dict[int, _Call] = {}
        self._thread: threading.Thread | None = None
        self.local = threading.local()

    def enter(self, call: _Call) -> None:
        with self._lock:
            self._calls.add(call)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="profileops-deadlines",
                                                daemon=True)
                self._thread.start()
            elif len(self._calls) == 1:
                self._wake.notify()

    def leave(self, call: _Call) -> None:
        with self._lock:
            self._calls.discard(call)
            if call.sock is not None and self._owners.get(id(call.sock)) is call:
                del self._owners[id(call.sock)]
            call.sock = None  # never shut down once the call is over (the pool may reuse it)

    def attach(self, sock: socket.socket | None) -> None:
        call = getattr(self.local, "call", None)
        if call is None or sock is None:
            return
        with self._lock:
            call.sock = sock
            self._owners[id(sock)] = call
            if call.expired or time.monotonic() >= call.until:
                call.expired = True
                _shut(sock)

    def _run(self) -> None:
        with self._lock:
            while True:
                if not self._calls:
                    self._wake.wait()
                    continue
                now = time.monotonic()
                for call in self._calls:
                    if now >= call.until:
                        call.expired = True
                        if call.sock is not None and self._owners.get(id(call.sock)) is call:
                            _shut(call.sock)
                self._wake.wait(TICK_SECONDS)


def _shut(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also for an SSLSocket: its own would drop the TLS object
        # under the thread still reading through it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


_watchdog = _Watchdog()


def watch(sock: socket.socket) -> None:
    """Hand a socket the caller opened itself to the current `bounded` call: it is shut down
    when the call's deadline passes (at once if it has passed already)."""
    _watchdog.attach(sock)


class bounded:  # noqa: N801 - used as a context manager: `with bounded(until):`
    """Run one HTTP call (through a DeadlineAdapter session) that must end by `until`
    (time.monotonic()). Raises DeadlineExceeded when it did not: whether the call failed or
    seemed to end (a socket shut down mid-answer can look like the end of a short answer)."""

    __slots__ = ("call", "outer")

    def __init__(self, until: float) -> None:
        self.call = _Call(until)

    def __enter__(self) -> _Call:
        if time.monotonic() >= self.call.until:
            raise DeadlineExceeded("no time left for the call")
        self.outer = getattr(_watchdog.local, "call", None)
        _watchdog.local.call = self.call
        _watchdog.enter(self.call)
        return self.call

    def __exit__(self, exc_type, exc, tb) -> bool:
        _watchdog.leave(self.call)
        _watchdog.local.call = self.outer
        if self.call.expired and (exc_type is None or issubclass(exc_type, Exception)):
            raise DeadlineExceeded("the call ran past its deadline") from None
        return False


# --- the connection classes that hand their socket to the current call -------------------------

class _AttachesItsSocket:
    """Mixed into urllib3's connection classes: every step of a call hands the socket to it."""

    def request(self, *args, **kwargs) -> None:
        _watchdog.attach(self.sock)  # a pooled connection (None: connect() attaches it)
        super().request(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        _watchdog.attach(self.sock)

    def getresponse(self, *args, **kwargs):
        _watchdog.attach(self.sock)  # a pooled connection: connect() was an earlier call's
        return super().getresponse(*args, **kwargs)


class _Connection(_AttachesItsSocket, HTTPConnection):
    pass


class _TLSConnection(_AttachesItsSocket, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections can be shut down by `bounded`'s watchdog."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS has pools of its own: no watchdog
            manager.pool_classes_by_scheme = _POOLS
        return manager


def mount(session: requests.Session, **adapter_options) -> requests.Session:
    adapter = DeadlineAdapter(**adapter_options)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
