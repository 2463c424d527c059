"""Run a few child processes together and stop them together (``tollgate up``, ``worker --processes``).

SIGINT/SIGTERM to the parent is passed on as SIGTERM to every child; a child that does not exit
within the grace period is killed.  If any child dies on its own, the others are stopped too,
so a half-dead set-up never lingers.  SIGHUP (logrotate) is passed on to the children started with
``hup=True`` (workers: they reopen their access log) and to no other: SIGHUP's default action would
end a child that does not handle it, such as the control plane under ``tollgate up``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    hup: bool = False  # pass SIGHUP on to it (it handles SIGHUP rather than dying of it)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(list(self.argv), env=env)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class Supervisor:
    def __init__(self, grace: float = 15.0) -> None:
        self.children: list[Child] = []
        self.grace = grace
        self._stopping = False

    def start(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, _frame: object) -> None:
        for child in self.children:
            if child.hup and child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGHUP)

    def wait(self) -> int:
        """Block until a signal arrives or a child exits; then stop everything. Returns an exit code.

        Meanwhile SIGHUP is passed on to the ``hup`` children."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        code = 0
        try:
            while not self._stopping:
                for child in self.children:
                    assert child.proc is not None
                    rc = child.proc.poll()
                    if rc is not None:
                        print(f"tollgate: {child.name} exited with status {rc}; stopping the rest", file=sys.stderr)
                        code = rc or 1
                        self._stopping = True
                        break
                time.sleep(0.1)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return code

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in reversed(self.children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
