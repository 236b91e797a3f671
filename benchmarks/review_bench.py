"""``charm review``: how fast the desk answers, cold and cached (issue 14).

    python benchmarks/review_bench.py [--photos ../shared/photos] [--big 5000] [--repeats 5]

Everything runs in a temp dir: the shared photos are copied there, scored with the small
conformance checkpoint (random weights: the scores do not matter here), and a desk is served by
uvicorn on a loopback port in this process; requests go over real HTTP. Sections:

1. pictures per photo: the first thumbnail request (decode once, write thumb + preview to the
   cache) vs the same request again (cache hit), and the preview after the thumbnail (cached by
   the same decode). Baseline in the same run: decoding the photo alone (``load_image``,
   long side 2048), so the table shows what the cache saves;
2. ``GET /api/photos`` (the grid's list: selection, groups, percentiles, decisions) for the
   shared library and for a synthetic library of ``--big`` photos inserted through the Store;
3. ``POST /api/photos/{id}/rating``: sidecar merge + atomic write + database row.

Medians of ``--repeats``; the machine may be shared, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _served(db: Path, paths: list[Path], cache_dir: Path):
    import uvicorn

    from charmcli.review.app import create_app
    from charmcli.review.desk import Desk
    from charmcli.review.images import ImageCache
    from charmcli.review.server import bind_loopback, new_token
    from charmcli.store import Store

    store = Store(db)
    desk = Desk(store, "aadb", [str(p) for p in paths])
    cache = ImageCache(cache_dir)
    token = new_token()
    sock = bind_loopback(0)
    server = uvicorn.Server(uvicorn.Config(create_app(desk, cache, token), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = sock.getsockname()[1]

    def call(method: str, path: str, body: bytes | None = None) -> tuple[float, int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start = time.perf_counter()
        conn.request(method, path, body=body, headers={"X-Charm-Token": token})
        response = conn.getresponse()
        data = response.read()
        seconds = time.perf_counter() - start
        conn.close()
        return seconds, response.status, data

    def stop() -> None:
        server.should_exit = True
        thread.join()
        store.close()

    return desk, call, stop


def _score(library: Path, db: Path) -> None:
    from typer.testing import CliRunner

    from charmcli.cli import app

    from shared_paths import conformance_model_args

    os.environ["CHARM_DB"] = str(db)
    result = CliRunner().invoke(app, ["score", str(library), *conformance_model_args(), "--quiet"])
    if result.exit_code not in (0, 1):
        raise SystemExit(result.stderr)


def _big_library(folder: Path, db: Path, n: int) -> None:
    """``n`` photo rows with scores and 384-d embeddings, one empty file each (the desk checks they exist)."""
    from charmcli.store import PhotoRow, ScoreRow, Store

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with Store(db) as store:
        ops = []
        for i in range(n):
            path = folder / f"shoot{i // 500:02d}" / f"IMG_{i:05d}.jpg"
            path.parent.mkdir(exist_ok=True)
            path.touch()
            sha = f"{i:064x}"
            date = f"2024-06-{1 + i // 2000:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00"
            ops.append(PhotoRow(str(path), 1, 0, sha, 6000, 4000, "JPEG", {"date_taken": date,
                                                                                       "make": "Canon", "camera_model": "EOS R5"}))  # fmt: skip
            emb = rng.standard_normal(384).astype(np.float16).tobytes()
            ops.append(ScoreRow(sha, "aadb", "bench", "max1024", float(rng.random()), [0.5], embedding=emb))
        for start in range(0, len(ops), 2000):
            store.write(ops[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from charmcli.library.decode import load_image
    from charmcli.library.scan import SUPPORTED_EXTENSIONS

    work = Path(tempfile.mkdtemp(prefix="charm-review-bench-"))
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")
    try:
        library = work / "library"
        library.mkdir()
        for src in sorted(args.photos.iterdir()):
            if src.is_file() and src.suffix.lower() in SUPPORTED_EXTENSIONS:
                shutil.copy2(src, library / src.name)
        db = work / "charm.db"
        _score(library, db)
        desk, call, stop = _served(db, [library], work / "cache")
        photos = desk.photos()
        print(f"# review bench: {len(photos)} shared photos, cache in a temp dir, medians of {args.repeats}\n")
        print("| photo | MP | decode alone s | first thumb s | cached thumb s | preview after thumb s | first/cached |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        firsts, cached_all = [], []
        for p in photos:
            decode = statistics.median(
                _timed(lambda p=p: load_image(p["path"], max_side=2048)) for _ in range(max(1, args.repeats // 2))
            )
            first, status, _ = call("GET", f"/api/photos/{p['id']}/thumb")
            assert status == 200, status
            cached = statistics.median(call("GET", f"/api/photos/{p['id']}/thumb")[0] for _ in range(args.repeats))
            preview = call("GET", f"/api/photos/{p['id']}/preview")[0]
            firsts.append(first)
            cached_all.append(cached)
            mp = (p["width"] or 0) * (p["height"] or 0) / 1e6
            print(f"| {p['name'][:34]} | {mp:.1f} | {decode:.3f} | {first:.3f} | {cached:.4f} | {preview:.4f} | "
                  f"{first / cached:.0f}x |")  # fmt: skip
        print(f"| **all {len(photos)}** | | | {sum(firsts):.2f} | {sum(cached_all):.3f} | | "
              f"{sum(firsts) / sum(cached_all):.0f}x |\n")  # fmt: skip

        lists = [call("GET", "/api/photos")[0] for _ in range(args.repeats)]
        pid = photos[0]["id"]
        rates = [call("POST", f"/api/photos/{pid}/rating", json.dumps({"rating": 1 + i % 5}).encode())[0]
                 for i in range(args.repeats)]  # fmt: skip
        stop()
        rows = [("GET /api/photos, nothing changed", len(photos), statistics.median(lists)),
                ("POST rating (sidecar + DB)", 1, statistics.median(rates))]  # fmt: skip
        if args.big:
            big_db = work / "big.db"
            _big_library(work / "big", big_db, args.big)
            from charmcli.store import Store

            _desk, call_big, stop_big = _served(big_db, [work / "big"], work / "cache-big")
            big = [call_big("GET", "/api/photos") for _ in range(args.repeats)]
            assert big[0][1] == 200 and len(json.loads(big[0][2])) == args.big
            rows.append(("GET /api/photos, nothing changed", args.big, statistics.median(s for s, _st, _b in big)))
            changed = []
            for i in range(args.repeats):  # another process commits: the desk re-reads and regroups
                with Store(big_db) as other:
                    other.record_decisions([(str(work / "big" / f"x{i}.jpg"), None, 1, None)], source="bench")
                changed.append(call_big("GET", "/api/photos")[0])
            rows.append(("GET /api/photos after another process wrote", args.big, statistics.median(changed)))
            filtered = [call_big("GET", "/api/photos?min_score=0.9&folder=shoot03")[0] for _ in range(args.repeats)]
            rows.append(("GET /api/photos?min_score&folder", args.big, statistics.median(filtered)))
            stop_big()
        print("| request | photos | median s |")
        print("| --- | ---: | ---: |")
        for name, n, seconds in rows:
            print(f"| {name} | {n} | {seconds:.4f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
