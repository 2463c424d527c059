"""Graceful shutdown through real workers: what a client sees around a SIGTERM.

The promise (docs/architecture.md, "Graceful shutdown"): a client sees a refused connection, a
complete response (the last one on its connection says ``connection: close``), or — on a kept-alive
connection it left idle for the whole drain grace — a clean close before it sent anything.  Never a
reset, and never an end of the connection after it sent a request that got no response.
"""

from __future__ import annotations

import random
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Backend, Cluster, Worker, free_port, snapshot_file, targets, wait_until

KEEP_ALIVE = b"GET /e/k HTTP/1.1\r\nhost: t\r\n\r\n"
CLOSE = b"GET /e/c HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
GRACE = 1.0  # TOLLGATE_SHUTDOWN_IDLE_GRACE of the workers below


class Failure(Exception):
    """An outcome the shutdown promise rules out (reset, or no answer to a request sent)."""


def read_response(sock: socket.socket, pending: bytearray | None = None) -> tuple[int, bool]:
    """One complete response: (status, the server said ``connection: close``). Raises Failure.

    ``pending``: for pipelined responses, the bytes read past this response (the next ones may
    come in the same segment) are kept there for the next call instead of being dropped."""
    buf = bytes(pending) if pending else b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failure(f"connection closed after the request was sent, {len(buf)} bytes of a head")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip().lower() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(fields["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failure(f"connection closed in a response body ({len(body)}/{length} bytes)")
            body += chunk
    except ConnectionResetError as exc:
        raise Failure(f"reset while waiting for the response ({exc})") from None
    except TimeoutError:
        raise Failure("no response within the client timeout") from None
    if pending is not None:
        pending[:] = body[length:]
    elif len(body) > length:
        raise Failure(f"{len(body) - length} bytes after the response, none asked for")
    return int(lines[0].split()[1]), fields.get("connection") == "close"


def closed_while_idle(sock: socket.socket) -> bool:
    """Before reusing a kept-alive connection: has the server closed it cleanly (EOF waiting)?
    Bytes waiting, or a reset, are failures: nothing may arrive on an idle connection but its end."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        peeked = sock.recv(1, socket.MSG_PEEK)
    except ConnectionResetError:
        raise Failure("idle kept-alive connection was reset") from None
    if peeked:
        raise Failure(f"unsolicited bytes on an idle connection: {peeked!r}")
    return True


def send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise Failure(f"reset while sending a request ({exc})") from None


@dataclass
class Round:
    """Outcomes of one SIGTERM round, from every client thread."""

    signalled: threading.Event = field(default_factory=threading.Event)
    signal_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    ok_after_signal: int = 0
    closing_after_signal: int = 0  # responses after the signal that said connection: close
    refused: int = 0
    idle_closed: int = 0
    failures: list[str] = field(default_factory=list)

    def since_signal(self) -> str:
        return f"{(time.monotonic() - self.signal_at) * 1e3:+.1f} ms" if self.signalled.is_set() else "before SIGTERM"

    def answered(self, status: int, close: bool, what: str) -> None:
        with self.lock:
            if status != 200:
                self.failures.append(f"{what}: status {status} ({self.since_signal()})")
            self.ok += 1
            if self.signalled.is_set():
                self.ok_after_signal += 1
                self.closing_after_signal += close

    def failed(self, what: str, exc: Failure) -> None:
        with self.lock:
            self.failures.append(f"{what}: {exc} ({self.since_signal()})")


def connect(port: int, r: Round) -> socket.socket | None:
    """A connection, or None when refused (the worker stopped listening: an allowed outcome).
    A SYN the draining worker no longer answers is retried by the kernel after ~1 s, and refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3.0)
    except ConnectionRefusedError:
        with r.lock:
            r.refused += 1
        return None
    except OSError as exc:  # reset as the handshake completed, or no answer at all
        raise Failure(f"connecting failed: {exc!r}") from None
    s.settimeout(5.0)
    return s


def keep_alive_client(port: int, r: Round, stop_at: list[float]) -> None:
    """Requests back to back on one kept-alive connection; a new one after each ``connection: close``."""
    sock: socket.socket | None = None
    used = False
    try:
        while time.monotonic() < stop_at[0]:
            if sock is None:
                sock = connect(port, r)
                if sock is None:
                    return
                used = False
            if used and closed_while_idle(sock):
                with r.lock:
                    r.idle_closed += 1
                sock.close()
                sock = None
                continue
            send(sock, KEEP_ALIVE)
            used = True
            status, close = read_response(sock)
            r.answered(status, close, "keep-alive client")
            if close:
                sock.close()
                sock = None
    except Failure as exc:
        r.failed("keep-alive client", exc)
    finally:
        if sock is not None:
            sock.close()


def fresh_connection_client(port: int, r: Round, stop_at: list[float]) -> None:
    """A new connection per request (``connection: close``): accepted around the signal or refused."""
    try:
        while time.monotonic() < stop_at[0]:
            sock = connect(port, r)
            if sock is None:
                return
            with sock:
                send(sock, CLOSE)
                status, _ = read_response(sock)
                r.answered(status, True, "new-connection client")
    except Failure as exc:
        r.failed("new-connection client", exc)


def late_client(port: int, r: Round, delay: float, fresh: bool) -> None:
    """Holds a connection (used once before the signal, or accepted and silent), then sends one
    request ``delay`` seconds after the SIGTERM: the request arrives while the worker drains."""
    what = f"late client ({'silent' if fresh else 'idle'} connection, +{delay * 1e3:.0f} ms)"
    try:
        sock = connect(port, r)
    except Failure as exc:
        r.failed(what, exc)
        return
    if sock is None:
        r.failed(what, Failure("refused before the signal"))
        return
    with sock:
        try:
            if not fresh:
                send(sock, KEEP_ALIVE)
                status, close = read_response(sock)
                r.answered(status, close, what)
                if close:
                    # The signal came while this first request was in flight (a slow start under
                    # load): the worker said this connection ends, so a client must not reuse it.
                    return
            r.signalled.wait(10)
            time.sleep(delay)
            if closed_while_idle(sock):
                with r.lock:
                    r.idle_closed += 1
                return
            send(sock, KEEP_ALIVE)
            status, close = read_response(sock)
            r.answered(status, close, what)
        except Failure as exc:
            r.failed(what, exc)


@pytest.fixture(scope="module")
def echo_snapshot(module_cluster: Cluster) -> tuple[Cluster, Backend, Path]:
    c = module_cluster
    echo = c.echo("drain")
    snap = snapshot_file(
        c.tmp / "drain-snapshot.json", [{"id": "e", "name": "e", "targets": targets(echo)}], {"/e": "e"}
    )
    return c, echo, snap


def start_worker(c: Cluster, snap: Path, name: str, **env: str) -> Worker:
    settings = {"TOLLGATE_SHUTDOWN_TIMEOUT": "10", "TOLLGATE_SHUTDOWN_IDLE_GRACE": str(GRACE), **env}
    extra = ("--access-log", "off", "--log-level", "warning")
    return c.worker(snapshot=snap, name=name, port=free_port(), extra=extra, env=settings)


ROUNDS = 15


def test_sigterm_under_load_never_resets_an_accepted_connection(echo_snapshot) -> None:
    """ROUNDS rounds of: a worker under load from kept-alive clients, new-connection clients and
    clients whose request is timed just after the signal; SIGTERM; the clients go on for a while.
    Every outcome must be refused / complete response / clean close of an idle connection."""
    c, _, snap = echo_snapshot
    rng = random.Random(1313)
    rounds: list[Round] = []
    for i in range(ROUNDS):
        worker = start_worker(c, snap, f"drain-{i}")
        r = Round()
        stop_at = [time.monotonic() + 30.0]  # moved to just after the signal below
        threads = [threading.Thread(target=keep_alive_client, args=(worker.port, r, stop_at)) for _ in range(3)]
        threads += [threading.Thread(target=fresh_connection_client, args=(worker.port, r, stop_at)) for _ in range(6)]
        for k, delay in enumerate((0.0, 0.001, 0.002, 0.004)):
            threads.append(threading.Thread(target=late_client, args=(worker.port, r, delay, k % 2 == 1)))
        for t in threads:
            t.start()
        wait_until(lambda r=r: r.ok >= 30, timeout=10, what="the clients to get going")  # type: ignore[misc]
        time.sleep(rng.uniform(0.0, 0.02))  # the signal lands at a random point of the traffic
        r.signal_at = time.monotonic()
        stop_at[0] = r.signal_at + 0.25
        worker.proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        r.signalled.set()
        for t in threads:
            t.join(timeout=15)
        assert not any(t.is_alive() for t in threads), "a client thread hung"
        assert worker.proc.proc.wait(timeout=15) == 0, worker.proc.log()  # type: ignore[union-attr]
        rounds.append(r)

    failures = [f"round {i}: {f}" for i, r in enumerate(rounds) for f in r.failures]
    summary = [(r.ok, r.ok_after_signal, r.refused, r.idle_closed) for r in rounds]
    print("per round (ok, ok after SIGTERM, refused, idle closed):", summary)
    assert not failures, f"{len(failures)} failure(s) in {sum(1 for r in rounds if r.failures)}/{ROUNDS} rounds:\n" + (
        "\n".join(failures)
    )
    # The rounds did exercise the drain: answers after the signal (the last on each connection
    # saying connection: close) and, once the listener was gone, refused connections.
    assert sum(r.closing_after_signal for r in rounds) >= ROUNDS
    assert all(r.refused for r in rounds), summary


def _idle_connection(worker: Worker, *, used: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", worker.port), timeout=5)
    if used:
        s.sendall(KEEP_ALIVE)
        assert read_response(s) == (200, False)
    return s


def _stopped_accepting(worker: Worker) -> bool:
    try:
        socket.create_connection(("127.0.0.1", worker.port), timeout=0.2).close()
    except (ConnectionRefusedError, TimeoutError):
        return True  # refused, or the handshake is no longer answered (refused once it is retried)
    return False


@pytest.mark.parametrize("used", [True, False], ids=["kept-alive", "accepted-silent"])
def test_request_on_idle_connection_during_drain_is_answered_with_close(echo_snapshot, used: bool) -> None:
    """(b) of the shutdown race: a request arriving on a kept-alive (or accepted, still silent)
    connection after SIGTERM — here once the worker has provably stopped accepting — gets a full
    response saying ``connection: close``, then a clean EOF; the worker exits 0."""
    c, _, snap = echo_snapshot
    worker = start_worker(c, snap, f"drain-idle-{used}", TOLLGATE_SHUTDOWN_IDLE_GRACE="3")
    with _idle_connection(worker, used=used) as s:
        worker.proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        wait_until(lambda: _stopped_accepting(worker), timeout=5, what="the worker to stop accepting")
        assert not closed_while_idle(s), "idle connection closed before the drain grace"
        s.sendall(KEEP_ALIVE)
        assert read_response(s) == (200, True)
        assert s.recv(1) == b""
    assert worker.proc.proc.wait(timeout=10) == 0  # type: ignore[union-attr]


def test_idle_connection_is_closed_cleanly_after_the_grace(echo_snapshot) -> None:
    """An idle kept-alive connection nobody uses again gets a clean EOF (no reset) once the grace
    has passed, and the worker then exits without waiting for the shutdown timeout."""
    c, _, snap = echo_snapshot
    grace = 0.3
    worker = start_worker(c, snap, "drain-eof", TOLLGATE_SHUTDOWN_IDLE_GRACE=str(grace))
    with _idle_connection(worker, used=True) as s:
        start = time.monotonic()
        worker.proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        s.settimeout(5)
        assert s.recv(1) == b""  # EOF, not ConnectionResetError
        waited = time.monotonic() - start
    assert waited >= grace * 0.8, waited
    assert worker.proc.proc.wait(timeout=5) == 0  # type: ignore[union-attr]
    assert time.monotonic() - start < 5  # not the 10 s shutdown timeout


def test_pipelined_requests_read_before_sigterm_are_all_answered(module_cluster: Cluster) -> None:
    """Requests already read when the signal comes are answered, in order; only the last response
    says ``connection: close``."""
    c = module_cluster
    lab = c.lab("drain-lab")
    snap = snapshot_file(c.tmp / "drain-lab.json", [{"id": "s", "name": "s", "targets": targets(lab)}], {"/s": "s"})
    worker = start_worker(c, snap, "drain-pipeline")
    before = lab.count()
    with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as s:
        s.sendall(
            b"GET /s/slow?ms=600 HTTP/1.1\r\nhost: t\r\n\r\n"
            b"GET /s/a HTTP/1.1\r\nhost: t\r\n\r\n"
            b"GET /s/b HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        wait_until(lambda: lab.count() > before, what="the slow request to reach the backend")
        worker.proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        pending = bytearray()  # the three responses may arrive in one segment
        answers: list[Any] = [read_response(s, pending) for _ in range(3)]
        assert answers == [(200, False), (200, False), (200, True)]
        assert not pending
        assert s.recv(1) == b""
    assert worker.proc.proc.wait(timeout=10) == 0  # type: ignore[union-attr]
