"""Gates: hold a forked ``charm`` run at a chosen point until the test has signalled it.

Why: a crash test that sleeps and then kills measures the machine, not the code. On a fast
runner the run is over before the kill; on a slow one it never got going. A gate makes the
moment of interruption part of the test instead: the run reaches a named point, says so (a
``reached`` file), and waits there until the test has sent its signal (or writes ``release``).

Gate points (``at``), each counted from 1 by ``nth``; every hit from the ``nth`` on holds:

* ``walk``: before the walk yields its ``nth`` file (``charmcli.pipeline.iter_files``);
* ``load``: as the model starts loading (``charmcli.model.factory.load``: every scorer is built there);
* ``read``: as a decode worker starts reading its ``nth`` file (``charmcli.work.read_bytes``);
* ``commit``: at the COMMIT of the ``nth`` transaction that wrote to ``scores``, after every row
  of it went to SQLite (an SQLite trace callback, so it sees whatever issues the COMMIT). Meant
  for SIGKILL: SQLite does not pass a KeyboardInterrupt out of a trace callback.

A hold in the main thread sleeps in short steps, so SIGINT there raises KeyboardInterrupt just
as it would in slow real work; a hold in a worker thread leaves the main thread waiting on it,
where SIGINT lands too. This module is imported only inside forked children (the test process
never installs a gate on itself).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

POINTS = ("walk", "load", "read", "commit")

#: A child whose test died without killing it must not hold forever: it exits after this long.
ORPHAN_EXIT_S = 600.0

_SCORES_WRITE = re.compile(
    r"\s*(?:(?:INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?)\s+[\[\"`]?scores\b",
    re.IGNORECASE,
)


class Gate:
    """Counts hits of one point; from the ``nth`` on, each hit holds until ``release`` exists."""

    def __init__(self, at: str, nth: int, folder: str) -> None:
        if at not in POINTS or nth < 1:
            raise ValueError(f"bad gate {at!r} #{nth}")
        self.at, self.nth, self.folder = at, nth, Path(folder)
        self.hits = 0
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.hits += 1
            n = self.hits
        if n < self.nth or (self.folder / "release").exists():
            return
        if n == self.nth:  # written once, atomically: the test reads "<point> <n> <thread>"
            tmp = self.folder / "reached.tmp"
            tmp.write_text(f"{self.at} {n} {threading.current_thread().name}\n")
            os.replace(tmp, self.folder / "reached")
        give_up = time.monotonic() + ORPHAN_EXIT_S
        while not (self.folder / "release").exists():
            if time.monotonic() > give_up:
                os._exit(97)
            time.sleep(0.005)

    def install(self) -> None:
        getattr(self, f"_install_{self.at}")()

    def _install_walk(self) -> None:
        import charmcli.pipeline as pipeline

        real = pipeline.iter_files

        def iter_files(*args: Any, **kwargs: Any):
            for item in real(*args, **kwargs):
                self.hit()
                yield item

        pipeline.iter_files = iter_files

    def _install_load(self) -> None:
        from charmcli.model import factory

        real = factory.load

        def load(*args: Any, **kwargs: Any):
            self.hit()
            return real(*args, **kwargs)

        factory.load = load

    def _install_read(self) -> None:
        import charmcli.work as work

        real = work.read_bytes

        def read_bytes(*args: Any, **kwargs: Any) -> bytes:
            self.hit()
            return real(*args, **kwargs)

        work.read_bytes = read_bytes

    def _install_commit(self) -> None:
        real = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real(*args, **kwargs)
            wrote_scores = False

            def trace(sql: str) -> None:
                nonlocal wrote_scores
                head = sql.lstrip()[:6].upper()
                if head.startswith("BEGIN"):
                    wrote_scores = False
                elif _SCORES_WRITE.match(sql):
                    wrote_scores = True
                elif head.startswith(("COMMIT", "END")) and wrote_scores:
                    wrote_scores = False
                    self.hit()

            conn.set_trace_callback(trace)
            return conn

        sqlite3.connect = connect


def install(spec: dict[str, Any] | None) -> None:
    """Install the gate a fork request describes (``{"at", "nth", "folder"}``), if any."""
    if spec:
        Gate(spec["at"], int(spec["nth"]), spec["folder"]).install()
