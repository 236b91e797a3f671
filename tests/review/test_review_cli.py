"""``charm review`` as a user runs it: a real process, its printed URL, Ctrl-C, usage errors."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from review_lib import ALL

CHARM = [sys.executable, "-c", "from charmcli.cli import main; main()"]


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def start_review(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*CHARM, "review", "--no-browser", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True, start_new_session=True)  # fmt: skip
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout=60):
        proc.kill()
        pytest.fail("charm review printed no URL within 60 s: " + proc.stderr.read())
    url = proc.stdout.readline().strip()
    return proc, url


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def env(library, _private_db, tmp_path) -> dict[str, str]:
    return {**os.environ, "CHARM_DB": str(_private_db), "XDG_DATA_HOME": str(tmp_path / "xdg-data")}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to see child processes")
def test_review_serves_its_url_and_stops_cleanly_on_ctrl_c(library, env):
    proc, url = start_review(str(library), env=env)
    try:
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        base, token = url.split("/?token=")
        port = int(base.rsplit(":", 1)[1])
        assert len(token) >= 40
        status, page = get(url)
        assert status == 200 and b"charm review" in page
        status, body = get(base + "/api/photos", {"X-Charm-Token": token})
        assert status == 200 and len(json.loads(body)) == len(ALL)
        assert get(base + "/api/photos")[0] == 403
        assert children_of(proc.pid) == []  # one process: no workers, no reloader
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, err
    assert "Stopped." in err and "Traceback" not in err and "127.0.0.1 only" in err
    assert out == ""  # the URL was the only line on stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(ProcessLookupError):  # the whole session is gone: nothing left running
        os.killpg(proc.pid, 0)


@pytest.mark.slow
def test_each_run_gets_a_fresh_token_and_sigterm_stops_it(library, env):
    tokens = []
    for _ in range(2):
        proc, url = start_review(str(library), "--port", "0", env=env)
        tokens.append(url.split("token=")[1])
        assert get(url)[0] == 200
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Stopped." in err
    assert tokens[0] != tokens[1]


def test_usage_errors_are_clear(cli, tmp_path, library):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["review", str(tmp_path / "nowhere")], "no such file or folder"),
        (["review", str(empty), "--no-browser"], "no photos scored with model aadb under"),
        (["review", "--pick-label", "", "--no-browser"], "--pick-label"),
        (["review", "--model", "spaq", "--no-browser"], "No photos scored with model spaq (scored: aadb)"),
        (["review", "--model", "aadbb", "--no-browser"], "unknown model 'aadbb'"),
        (["review", "--port", "70000"], "--port"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr.replace("\n", " "), (args, result.stderr)
        assert result.stdout == ""


def test_review_does_not_import_torch(library, env):
    code = ("import sys; from charmcli.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['review', '/no/such/place']); "
            "print(r.exit_code, 'torch' in sys.modules, 'uvicorn' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr


def test_a_taken_port_is_a_clear_error(cli, library):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        result = cli("review", str(library), "--port", str(port), "--no-browser")
    finally:
        holder.close()
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
