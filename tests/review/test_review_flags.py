"""The desk's technical flags: each photo lists its flags and reasons, the page filters on them
(hide some, or only one), /api/info counts them, and a wrong flag name is a 400 in words."""

from __future__ import annotations

import json

from review_lib import ALL

from charmcli.flags import FLAG_NAMES
from charmcli.store import MeasuresRow, Store

CLEAN = {"focus_width": 0.6, "textured_tiles": 100, "motion_ratio": 1.0, "motion_width": 1.0, "highlights": 0.0,
         "brightness": 0.5, "luma_p99": 0.9, "faces": 0, "eyes_closed": 0}  # fmt: skip


def _mark(db, library, flagged: dict[str, dict]) -> None:
    """Store measures for every photo: ``flagged`` names get theirs, the others clean ones."""
    with Store(db) as store:
        rows = []
        for name in ALL:
            sha = store.photo_by_path(str(library / name))["sha256"]
            rows.append(MeasuresRow(sha, "test", {**CLEAN, **flagged.get(name, {})}))
        store.write(rows)


def _get(served, query: str = "") -> list[dict]:
    status, _headers, body = served.request("GET", "/api/photos" + query, token="header")
    assert status == 200, body
    return json.loads(body)


def test_flags_are_listed_and_filtered(serve, library, _private_db):
    _mark(_private_db, library, {"jolla.jpg": {"focus_width": 3.0}, "DSCN0010.jpg": {"eyes_closed": 1, "faces": 2}})
    s = serve([library])
    photos = {p["name"]: p for p in _get(s)}
    assert photos["jolla.jpg"]["flags"] == ["soft"]
    assert photos["jolla.jpg"]["flag_reasons"] == ["soft: sharpest region blurred 3.0 px (limit 1.2)"]
    assert photos["DSCN0010.jpg"]["flags"] == ["eyes-closed"]
    assert sum(bool(p["flags"]) for p in photos.values()) == 2
    assert {p["name"] for p in _get(s, "?hide=soft")} == set(photos) - {"jolla.jpg"}
    assert {p["name"] for p in _get(s, "?hide=all")} == set(photos) - {"jolla.jpg", "DSCN0010.jpg"}
    assert [p["name"] for p in _get(s, "?only=eyes-closed")] == ["DSCN0010.jpg"]
    info = json.loads(s.request("GET", "/api/info", token="header")[2])
    assert info["flags"] == {name: int(name in ("soft", "eyes-closed")) for name in FLAG_NAMES}
    status, _h, body = s.request("GET", "/api/photos?hide=blurry", token="header")
    assert status == 400 and b"unknown flag blurry" in body


def test_the_desk_takes_the_flag_limits_it_was_given(serve, library, _private_db):
    from charmcli.flags import parse_limits

    _mark(_private_db, library, {"jolla.jpg": {"focus_width": 3.0}})
    s = serve([library], flag_limits=parse_limits("soft_width=5"))
    assert all(p["flags"] == [] for p in _get(s))
