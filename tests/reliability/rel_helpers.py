"""Helpers for the reliability tests (a uniquely named module: ``conftest`` is ambiguous).

* :func:`make_photo` / :func:`make_library`: small distinct JPEGs, fast to score;
* :func:`fingerprint`: size, mtime_ns, mode and sha256 of files, to compare before/after;
* :class:`WriteGuard`: refuses, and records, any attempt to write an input file in-process;
* :class:`ForkServer`: a pre-imported interpreter that forks real ``charm`` processes in
  milliseconds, so tests can SIGKILL/SIGINT many runs without paying torch's import each time;
  its runs get SIGINT at its default whatever pytest inherited, and may hold at a
  :class:`GateSpec` (``rel_gates``) so that the test, not the machine's speed, picks the moment.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


# -- photos -------------------------------------------------------------------------------------


def make_photo(
    path: Path, *, seed: int, size: tuple[int, int] = (64, 48), fmt: str = "JPEG", date: str | None = None
) -> Path:
    """A small image with pixels unique to ``seed`` (so every file has its own content hash)."""
    w, h = size
    image = Image.new("RGB", size)
    image.putdata([((x * 7 + seed * 53) % 256, (y * 11 + seed * 29) % 256, (x * y + seed * 97) % 256)
                   for y in range(h) for x in range(w)])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if date and fmt == "JPEG":
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = date
        kwargs["exif"] = exif
    image.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}), **kwargs)
    return path


def make_library(root: Path, n: int, *, size: tuple[int, int] = (64, 48)) -> list[Path]:
    return [make_photo(root / f"sub{i % 3}" / f"img_{i:03d}.jpg", seed=i, size=size) for i in range(n)]


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error ")]


# -- fingerprints -------------------------------------------------------------------------------


def fingerprint(paths: Iterable[Path]) -> dict[str, tuple[int, int, int, str]]:
    """``path -> (size, mtime_ns, permission bits, sha256)``, without following the last symlink."""
    out = {}
    for p in paths:
        st = os.lstat(p)
        data = os.readlink(p).encode() if stat.S_ISLNK(st.st_mode) else Path(p).read_bytes()
        out[os.fsdecode(p)] = (
            st.st_size,
            st.st_mtime_ns,
            stat.S_IMODE(st.st_mode),
            hashlib.sha256(data).hexdigest(),
        )
    return out


def tree(root: Path) -> list[str]:
    """Every name under ``root`` (relative, sorted): files appearing or vanishing show up here."""
    return sorted(
        os.fsdecode(os.path.relpath(os.path.join(d, n), root)) for d, ds, fs in os.walk(root) for n in ds + fs
    )


# -- the write guard ----------------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class WriteGuard:
    """Refuse, and remember, every in-process attempt to modify one of ``files``.

    Why not ``chmod -w``: tests often run as root, and root ignores permission bits. So the
    functions every write goes through are wrapped for the duration (all threads see them):
    ``open``/``io.open`` in a writing mode, ``os.open`` with a writing flag, ``os.truncate``,
    ``os.utime``/``chmod``/``chown`` (content ops: the target counts as an input when its real
    path is one or when it *is* one by device and inode, e.g. through a hard link made by
    ``--link`` or a symlink made by ``--symlink``), and ``os.replace``/``rename``/``remove``/
    ``unlink`` (name ops: only the input's own name counts, since dropping or replacing a link
    to it leaves it intact). The wrapped call raises ``PermissionError`` like a read-only file
    would, and the attempt is recorded, so code that swallows the error still fails the test.
    Pillow, shutil, pathlib and charm's atomic writer all go through these functions; SQLite
    opens only its database files.
    """

    def __init__(self, files: Iterable[os.PathLike[str] | str]) -> None:
        files = list(files)
        self.names = {self._entry(f) for f in files}
        self.inodes = {(st.st_dev, st.st_ino) for st in map(os.stat, files)}
        self.violations: list[str] = []
        self._lock = threading.Lock()

    @staticmethod
    def _entry(path: Any) -> str:
        """The directory entry a path names: real parent folder + last component."""
        path = os.fsdecode(path)
        return os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.basename(path))

    def _is_input(self, path: Any, *, follow: bool, dir_fd: int | None = None) -> bool:
        try:
            if isinstance(path, int):
                st = os.fstat(path)
            elif dir_fd is None and not follow:
                return self._entry(path) in self.names
            else:
                if dir_fd is None and self._entry(os.path.realpath(path)) in self.names:
                    return True
                st = os.stat(path, dir_fd=dir_fd)
        except (OSError, TypeError, ValueError):
            return False
        return (st.st_dev, st.st_ino) in self.inodes

    def _check(self, op: str, path: Any, *, follow: bool = True, dir_fd: int | None = None) -> None:
        if self._is_input(path, follow=follow, dir_fd=dir_fd):
            with self._lock:
                self.violations.append(f"{op} {os.fsdecode(path) if not isinstance(path, int) else path}")
            raise PermissionError(errno.EACCES, "Permission denied (read-only input, test guard)", path)

    def install(self, monkeypatch) -> WriteGuard:
        real_open, real_os_open = builtins.open, os.open

        def guarded_open(file, mode="r", *args, **kwargs):
            if not isinstance(file, int) and any(c in mode for c in "wax+"):
                self._check(f"open({mode!r})", file)
            return real_open(file, mode, *args, **kwargs)

        def guarded_os_open(path, flags, mode=0o777, *, dir_fd=None):
            if flags & _WRITE_FLAGS:
                self._check(f"os.open(flags={flags:#o})", path, dir_fd=dir_fd)
            return real_os_open(path, flags, mode, dir_fd=dir_fd)

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(os, "open", guarded_os_open)
        for name in ("truncate", "utime", "chmod", "chown"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name), n_paths=1, content=True))
        for name in ("replace", "rename"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name), n_paths=2, content=False))
        for name in ("remove", "unlink"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name), n_paths=1, content=False))
        return self

    def _wrap(self, name: str, real, *, n_paths: int, content: bool):
        def guarded(*args, **kwargs):
            follow = content and kwargs.get("follow_symlinks", True)
            dir_fd = kwargs.get("dir_fd") or kwargs.get("src_dir_fd")
            for path in args[:n_paths]:
                self._check(f"os.{name}", path, follow=follow, dir_fd=dir_fd)
            return real(*args, **kwargs)

        return guarded


# -- the fork server ----------------------------------------------------------------------------

_DRIVER = r"""
import json, os, signal, sys, traceback
# Whatever pytest inherited (``nohup``, ``trap '' INT``, a background job or CI runner that
# ignores SIGINT), the runs under test get what a charm started from a terminal has: SIGINT
# raising KeyboardInterrupt. An ignored SIGINT would survive fork() and the Ctrl-C tests
# would wait for an interrupt that never comes.
signal.signal(signal.SIGINT, signal.default_int_handler)
import torch  # the expensive part, paid once: every forked run starts warm
torch.set_num_threads(1)
import charmcli.cli, charmcli.model, charmcli.pipeline, charmcli.work, charmcli.library.decode  # noqa: F401
import charmcli.model.charm.scorer, charmcli.model.factory  # noqa: F401 - a gate may wrap factory.load
from charmcli.cli import main
import rel_gates
sigint = "default" if signal.getsignal(signal.SIGINT) is signal.default_int_handler else "other"
print(json.dumps({"ready": os.getpid(), "sigint": sigint}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        if os.WIFSIGNALED(status):
            reply = {"signal": os.WTERMSIG(status)}
        else:
            reply = {"code": os.WEXITSTATUS(status)}
        print(json.dumps(reply), flush=True)
        continue
    # SIGINT stays blocked across fork() until the child is inside charm's main(): a Ctrl-C
    # aimed at the child must never hit this driver's own code.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pid = os.fork()
    if pid == 0:
        code, started = 98, False
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
            os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
            os.environ.update(req["env"])
            sys.argv = ["charm", *req["args"]]
            rel_gates.install(req.get("gate"))
            started = True
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            code = 0
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 99 if started else 98
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    print(json.dumps({"pid": pid}), flush=True)
"""


class ForkServer:
    """``charm`` runs as real processes, forked from one pre-imported interpreter.

    ``start(args, env, out_dir)`` forks a child that runs ``charm args…`` with its own stdout and
    stderr files; the caller may ``os.kill`` it with any signal; ``wait(pid)`` reaps it and says
    ``{"code": n}`` or ``{"signal": n}``. A forked child is a separate process with its own
    SQLite connection, exactly like a second ``charm`` started from a shell, minus the 5-10 s
    of importing torch every time.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _DRIVER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**env, "PYTHONPATH": os.pathsep.join((str(REPO), str(HERE)))}, cwd=str(REPO),
        )  # fmt: skip
        ready = self._reply(timeout=120)
        assert "ready" in ready, ready
        assert ready["sigint"] == "default", "the forked runs would not see Ctrl-C"
        self._n = 0

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise RuntimeError("the fork server did not answer")
        return json.loads(result[0])

    def _send(self, request: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._reply(timeout)

    def start(
        self, args: list[str], env: dict[str, str], out_dir: Path, gate: GateSpec | None = None
    ) -> tuple[int, Path, Path]:
        """Fork ``charm args…``; with ``gate``, the run holds at that point (see ``rel_gates``)."""
        self._n += 1
        out, err = out_dir / f"run{self._n}.out", out_dir / f"run{self._n}.err"
        request: dict[str, Any] = {
            "op": "run", "args": [str(a) for a in args], "env": env, "stdout": str(out), "stderr": str(err),
        }  # fmt: skip
        if gate is not None:
            request["gate"] = gate.request()
        pid = self._send(request)["pid"]
        return pid, out, err

    def wait(self, pid: int, timeout: float = 120) -> dict[str, Any]:
        return self._send({"op": "wait", "pid": pid}, timeout)

    def run(
        self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float = 120
    ) -> tuple[dict[str, Any], str, str]:
        pid, out, err = self.start(args, env, out_dir)
        status = self.wait(pid, timeout)
        return status, out.read_text(errors="replace"), err.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class GateSpec:
    """Where a forked run holds (``at``, ``nth``: see ``rel_gates``) and the folder it reports in.

    :meth:`wait` returns once the run is held there; :meth:`release` lets it go on.
    """

    def __init__(self, folder: Path, at: str, nth: int = 1) -> None:
        self.folder, self.at, self.nth = folder, at, nth
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("reached", "release"):
            (folder / name).unlink(missing_ok=True)

    def request(self) -> dict[str, Any]:
        return {"at": self.at, "nth": self.nth, "folder": str(self.folder)}

    def wait(self, pid: int, timeout: float = 120) -> str:
        """Block until the run ``pid`` is held at the gate; what it wrote (point, hit, thread).

        ``timeout`` only bounds a broken run (one that never gets there): reaching the gate is
        the run's doing, whatever the machine's speed. A run that ends first fails the test.
        """
        reached = self.folder / "reached"
        deadline = time.monotonic() + timeout
        while not reached.exists():
            assert _running(pid), f"the run ended before reaching the {self.at} gate #{self.nth}"
            assert time.monotonic() < deadline, f"the run never reached the {self.at} gate #{self.nth}"
            time.sleep(0.01)
        return reached.read_text().strip()

    def release(self) -> None:
        (self.folder / "release").touch()


def _running(pid: int) -> bool:
    """Is ``pid`` still running? (A forked run is the fork server's child, so not ours to
    ``waitpid``; once it exits it is a zombie until the server reaps it: Linux's /proc says so.)"""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_for_lines(path: Path, n: int, timeout: float) -> int:
    """Wait until ``path`` has at least ``n`` lines (or ``timeout``); the count seen."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        try:
            count = path.read_bytes().count(b"\n")
        except FileNotFoundError:
            count = 0
        if count >= n:
            break
        time.sleep(0.02)
    return count
