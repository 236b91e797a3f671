"""The decisions table (issue 14): migration, round trip, and `charm rate`/`top`/`report` using it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from old_schema import database_at
from review_lib import ALL

from charmcli.cull.xmp import rating_number, read_sidecar
from charmcli.store import SCHEMA_VERSION, Store


def test_a_version_1_database_gains_the_decisions_table_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    conn = database_at(path, 1)
    conn.execute("INSERT INTO photos (path, size, mtime_ns, sha256, first_seen, last_seen) VALUES ('/p/a.jpg', 1, 2, 'ab', 'x', 'x')")
    conn.close()
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION >= 2
        assert store.photo_by_path("/p/a.jpg")["sha256"] == "ab"
        assert store.decisions_for() == {}
        store.record_decisions([("/p/a.jpg", "ab", 3, None)], source="review")
    with Store(path) as store:  # reopening does not migrate again
        assert store.decisions_for()["/p/a.jpg"]["rating"] == 3


def test_decisions_upsert_and_lookup_in_chunks(tmp_path):
    with Store(tmp_path / "d.db") as store:
        paths = [f"/lib/IMG_{i:04d}.jpg" for i in range(1203)]  # more than one chunk of bound parameters
        store.record_decisions([(p, None, i % 7 - 1, "Green" if i % 2 else None) for i, p in enumerate(paths)], "rate")
        store.record_decisions([(paths[0], "cd", 5, "Red")], "review")
        got = store.decisions_for([*paths[:1000], "/not/there.jpg"])
        assert len(got) == 1000 and "/not/there.jpg" not in got
        assert got[paths[0]]["rating"] == 5 and got[paths[0]]["label"] == "Red" and got[paths[0]]["source"] == "review"
        assert got[paths[3]]["rating"] == 2 and got[paths[3]]["label"] == "Green"
        assert len(store.decisions_for()) == 1203 and store.decisions_for([]) == {}


def test_rate_records_what_it_wrote_and_report_falls_back_to_it(cli, library, db, tmp_path):
    result = cli("rate", library, "--json")
    assert result.exit_code == 0, result.stderr
    rated = {p["path"]: p for p in json.loads(result.stdout)["photos"]}
    with Store(db) as store:
        decided = store.decisions_for()
    assert set(decided) == {str(library / n) for n in ALL}
    for path, row in decided.items():
        assert row["source"] == "rate"
        assert row["rating"] == rated[path]["stars"] == rating_number(read_sidecar(path + ".xmp")["rating"])
        assert row["label"] == read_sidecar(path + ".xmp")["label"]
    top = {r["path"]: r for r in json.loads(cli("top", "20", "--json").stdout)}
    assert all(top[p]["rating"] == decided[p]["rating"] for p in decided)

    dry = cli("rate", library, "--dry-run", "--stars", "1,2,3,4")
    assert dry.exit_code == 0
    with Store(db) as store:  # a dry run records nothing
        assert {p: r["decided_at"] for p, r in store.decisions_for().items()} == {p: r["decided_at"] for p, r in decided.items()}

    for path in decided:  # without sidecars, the sheet still shows charm's ratings
        Path(path + ".xmp").unlink()
    out = tmp_path / "sheet"
    assert cli("report", library, "-o", out, "--top", "0").exit_code == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    shown = re.findall(r'title="(\d) of 5 stars"', page)
    assert sorted(int(s) for s in shown) == sorted(r["rating"] for r in decided.values() if r["rating"] > 0)

