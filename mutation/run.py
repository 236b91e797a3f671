"""Mutation testing of the rules charm promises: ``python mutation/run.py [NAME ...] [--jobs N]``.

Each entry of ``mutation/modules.toml`` is run by mutmut in its own scratch folder under
``.mutation/NAME`` (git ignores it): mutmut mutates one file, runs only the tests listed for it,
and this script prints one table row per entry (mutants, killed, survived, …) and writes the
survivors' diffs to ``.mutation/NAME/survivors.txt`` for docs/mutation.md. ``--survivors`` tests
again only what survived the last run of the entry (after a new test: minutes instead of tens of
minutes) and keeps the other results. Not run by CI; see docs/mutation.md.

Why a scratch folder per entry: mutmut reads its settings from ./pyproject.toml, one set per
folder, and copies the sources and tests into ``mutants/`` there. The folder links the repository's
``charmcli``, ``tests`` and ``docs`` and the shared test data beside it (``../shared`` of the copy).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
MODULES = Path(__file__).with_name("modules.toml")
WORK = ROOT / ".mutation"
SHARED = ROOT.parent / "shared"


def _scratch(name: str, spec: dict) -> Path:
    """``.mutation/NAME`` with links to the code and tests and a pyproject whose [tool.mutmut] is this entry's."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    links = (("charmcli", ROOT / "charmcli"), ("tests", ROOT / "tests"), ("docs", ROOT / "docs"), ("shared", SHARED.resolve()))
    for link, target in links:
        path = folder / link
        if not path.is_symlink():
            path.symlink_to(target)
    toml = (ROOT / "pyproject.toml").read_text()
    settings = {
        "source_paths": ["charmcli"],
        "only_mutate": [spec["file"]],
        "pytest_add_cli_args_test_selection": spec["tests"],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-p", "no:randomly"],
        "also_copy": ["docs"],  # tests read promises from the docs
        "use_git_change_detection": False,
        **spec.get("mutmut", {}),  # an entry's own mutmut settings
    }
    lines = [f"{k} = {_toml(v)}" for k, v in settings.items()]
    (folder / "pyproject.toml").write_text(toml + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n")
    return folder


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prefix(spec: dict) -> str:
    return spec["file"].removesuffix(".py").replace("/", ".") + "."


def _patterns(spec: dict) -> list[str]:
    return [_prefix(spec) + f for f in spec["functions"]]


def _mutmut(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the copy in mutants/ is the one imported
    # One thread per mutant: a child forked after torch started its OpenMP pool can hang forever.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # mutmut's deliberately failing runs keep the suite's temporary tree (tests/conftest.py):
    # give it one inside the scratch folder and drop it afterwards
    tmp = folder / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    try:
        return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=folder, env=env, text=True,
                              capture_output=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _results(folder: Path, spec: dict) -> dict[str, str]:
    """mutant → status ("killed", "survived", "no tests", ...) of this entry's functions."""
    found = {}
    for line in _mutmut(folder, "results", "--all", "true").stdout.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m and any(fnmatch.fnmatchcase(m.group(1), p) for p in _patterns(spec)):
            found[m.group(1)] = m.group(2).strip()
    return found


def _group(status: dict[str, str]) -> dict[str, list[str]]:
    by_status: dict[str, list[str]] = {}
    for mutant, result in sorted(status.items()):
        by_status.setdefault(result, []).append(mutant)
    return by_status


def run(name: str, spec: dict, jobs: int, survivors_only: bool) -> dict[str, list[str]]:
    folder = _scratch(name, spec)
    saved = folder / "results.json"
    before: dict[str, list[str]] = {}
    if survivors_only:
        before = json.loads(saved.read_text()) if saved.exists() else _group(_results(folder, spec))
    retry = sorted(before.get("survived", []) + before.get("no tests", []))
    if survivors_only and not retry:
        return before
    shutil.rmtree(folder / "mutants", ignore_errors=True)  # fresh: the tests may have changed since
    done = _mutmut(folder, "run", "--max-children", str(jobs), *(retry or _patterns(spec)))
    (folder / "run.log").write_text(done.stdout + done.stderr)
    if "failed to collect stats" in done.stdout + done.stderr:
        raise SystemExit(f"{name}: the tests fail without any mutant; see {folder / 'run.log'}")
    status: dict[str, str] = {m: k for k, names in before.items() for m in names}
    status.update({m: r for m, r in _results(folder, spec).items() if not retry or m in retry})
    by_status = _group(status)
    if not by_status:
        raise SystemExit(f"{name}: mutmut gave no results; see {folder / 'run.log'}")
    saved.write_text(json.dumps(by_status, indent=1))
    with open(folder / "survivors.txt", "w") as out:
        for mutant in sorted(by_status.get("survived", []) + by_status.get("no tests", [])):
            out.write(_mutmut(folder, "show", mutant).stdout + "\n")
    return by_status


def main() -> None:
    modules = tomllib.loads(MODULES.read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", choices=[*modules, []], help="entries of mutation/modules.toml (default all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--survivors", action="store_true", help="test again only the last run's survivors")
    args = parser.parse_args()
    print(f"{'module':24} {'file':34} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'other':>5}")
    for name in args.names or modules:
        spec = modules[name]
        found = run(name, spec, args.jobs, args.survivors)
        total = sum(map(len, found.values()))
        killed, survived, untested = (len(found.get(k, [])) for k in ("killed", "survived", "no tests"))
        other = total - killed - survived - untested
        print(f"{name:24} {spec['file']:34} {total:7} {killed:6} {survived:8} {untested:8} {other:5}", flush=True)


if __name__ == "__main__":
    main()
