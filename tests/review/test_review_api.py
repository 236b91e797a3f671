"""The desk's HTTP API against a real uvicorn server: token, traversal, decisions, pictures, filters."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from review_lib import ALL, BURST, photo_ids
from starlette.routing import Route

from charmcli.cull.xmp import read_sidecar
from charmcli.store import Store

from shared_paths import PHOTOS

EXIFTOOL = shutil.which("exiftool")


def listing(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _dirs, files in os.walk(root) for f in files}


def exif_xmp(path) -> dict:
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed (apt-get install libimage-exiftool-perl)")
    out = subprocess.run([EXIFTOOL, "-j", "-XMP:all", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def jpeg(body: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(body))
    assert im.format == "JPEG"
    return im


# -- the token ----------------------------------------------------------------------------------


def app_requests(app, photo_id: int) -> list[tuple[str, str]]:
    """(method, path) for every route the app has, path parameters filled with a real photo id.

    Read from Starlette's own route table, so a route added later is covered without anyone
    remembering to list it here.
    """
    found = []
    for route in app.routes:
        assert isinstance(route, Route), f"{route!r}: teach this helper how to fill it"
        assert set(route.param_convertors) <= {"photo_id"}, route.path
        path = route.path_format.format(photo_id=photo_id)
        found += [(method, path) for method in sorted(route.methods)]
    return found


def test_every_route_needs_the_token(serve, library):
    s = serve([library])
    pid = photo_ids(s.store, library)["DSCN0010.jpg"]
    requests = app_requests(s.app, pid)
    assert ("GET", f"/api/photos/{pid}/full") in requests and ("POST", f"/api/photos/{pid}/rating") in requests
    decision = json.dumps({"rating": 4, "label": "Green"}).encode()  # a body each POST route accepts
    before = listing(library)
    for method, path in [*requests, ("GET", "/no/such/route"), ("GET", "/api/photos/999999/thumb")]:
        body = decision if method == "POST" else None
        for token in (None, "", "wrong", s.token[:-1], s.token + "x", s.token.upper()):
            status, headers, answer = s.request(method, path, token=token, body=body)
            assert status == 403, (method, path, token, status)
            assert headers["content-security-policy"].startswith("default-src 'none'")
            assert method == "HEAD" or b"token" in answer
        status, _h, _b = s.request(method, path + "?token=nope&token2=" + s.token, token=None, body=body)
        assert status == 403, (method, path)
    assert listing(library) == before and s.store.decisions_for() == {}  # no refused POST wrote anything
    for method, path in requests:  # query and header both open the door
        for how in ("query", "header"):
            status, headers, answer = s.request(method, path, token=how, body=decision if method == "POST" else None)
            assert status == 200, (method, path, how, status, answer[:200])
            assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"
    assert s.request("GET", "/no/such/route", token="header")[0] == 404


def test_page_links_its_files_with_the_token(serve, library):
    s = serve([library])
    _status, headers, body = s.request("GET", "/", token="query")
    page = body.decode()
    assert headers["content-type"].startswith("text/html")
    assert f'/static/desk.js?token={s.token}' in page and f'/static/desk.css?token={s.token}' in page
    assert "__TOKEN__" not in page and "http://" not in page and "https://" not in page  # nothing from a CDN
    script = s.request("GET", "/static/desk.js", token="query")[2].decode()
    assert "http://" not in script and "https://" not in script


def test_a_request_without_the_token_changes_nothing(serve, library):
    s = serve([library])
    pid = photo_ids(s.store, library)["DSCN0010.jpg"]
    before = listing(library)
    cache_before = listing(s.cache.root) if s.cache.root.exists() else set()
    body = json.dumps({"rating": 5}).encode()
    for token in (None, "wrong"):
        for field, payload in (("rating", body), ("label", b'{"label": "Green"}')):
            status, _h, _b = s.request("POST", f"/api/photos/{pid}/{field}", body=payload, token=token,
                                       headers={"Content-Type": "application/json"})  # fmt: skip
            assert status == 403
    # a token in the body or a cookie is not a token
    status, _h, _b = s.request("POST", f"/api/photos/{pid}/rating", body=json.dumps({"rating": 5, "token": s.token}).encode(),
                               token=None, headers={"Cookie": f"token={s.token}"})  # fmt: skip
    assert status == 403
    assert s.request("GET", f"/api/photos/{pid}/thumb", token=None)[0] == 403
    assert listing(library) == before  # no sidecar
    assert (listing(s.cache.root) if s.cache.root.exists() else set()) == cache_before and s.cache.made == 0
    assert s.store.decisions_for() == {}


def test_wrong_host_header_is_refused(serve, library):
    s = serve([library])
    for host in ("evil.example", "evil.example:80", f"127.0.0.1.evil.example:{s.port}"):
        status, _h, _b = s.request("GET", "/api/photos", token="header", headers={"Host": host})
        assert status == 400, host
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}"):
        assert s.request("GET", "/api/photos", token="header", headers={"Host": host})[0] == 200


# -- only photos the desk knows -----------------------------------------------------------------


def test_traversal_attempts_reach_no_file(serve, library, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    s = serve([library])
    pid = photo_ids(s.store, library)["DSCN0010.jpg"]
    attempts = [
        "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd", "/static/%252e%252e/etc/passwd", "/..\\..\\etc\\passwd",
        "//etc/passwd", "/etc/passwd", str(secret), "/static/" + str(secret), "/static" + str(secret),
        f"/api/photos/{pid}/../../../../etc/passwd", f"/api/photos/%2e%2e/{pid}/thumb",
        "/api/photos/..%2F..%2Fetc%2Fpasswd/thumb", "/api/photos/%2Fetc%2Fpasswd/thumb",
        f"/api/photos/{secret}/thumb", f"/api/photos//{secret}/thumb", f"/api/photos/{pid}/thumb/../../../{secret}",
        "/api/photos/-1/thumb", "/api/photos/1e3/thumb", "/api/photos/0x1/thumb",
        f"/api/photos/{pid}%00/thumb", f"/api/file?path={secret}", f"/api/photos/{pid}/thumb/{secret}",
        "/static/desk.js/../../../../etc/passwd", "/static/index.html", "/static/", "/static/../app.py",
    ]  # fmt: skip
    for path in attempts:
        status, _h, body = s.request("GET", path, token="query")
        assert status in (400, 404, 405), (path, status)
        assert b"TOP-SECRET" not in body and b"root:" not in body, path
    # a query parameter naming a file is ignored, the id decides
    status, _h, body = s.request("GET", f"/api/photos/{pid}/thumb?path={secret}", token="query")
    assert status == 200 and jpeg(body).size == (480, 360)


def test_photos_outside_the_paths_are_unknown(serve, library, model_args, cli):
    """The database knows the whole library, the desk only the PATH it was given."""
    s = serve([library / "sub"])
    ids = photo_ids(s.store, library)
    listed = json.loads(s.request("GET", "/api/photos", token="header")[2])
    assert [p["path"] for p in listed] == [str(library / "sub" / "landscape_6.jpg")]
    photo_routes = [r for r in s.app.routes if "photo_id" in r.param_convertors]  # every one, from the app
    decision = json.dumps({"rating": 2, "label": "Green"}).encode()  # a body each POST route accepts
    for name, pid in ids.items():
        expected = 200 if name.startswith("sub/") else 404
        for route in photo_routes:
            for method in sorted(route.methods):
                path = route.path_format.format(photo_id=pid)
                status, _h, body = s.request(method, path, token="header", body=decision if method == "POST" else None)
                assert status == expected, (name, method, path, status)
                if expected == 404 and method != "HEAD":  # one line whatever the route, naming only the id
                    assert json.loads(body) == {"error": f"no photo {pid} on this desk"}, (name, method, path)
    assert set(s.store.decisions_for()) == {str(library / "sub" / "landscape_6.jpg")}
    assert listing(library) == {*ALL, "sub/landscape_6.jpg.xmp"}


def test_symlinks_out_of_the_library_are_not_served(serve, library, tmp_path):
    """A photo swapped for a symlink after scoring (to a secret, to another photo) renders nothing."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(b"TOP-SECRET" * 2000)
    other = tmp_path / "outside" / "other.jpg"
    shutil.copyfile(PHOTOS / "DSCN0010.jpg", other)
    Image.open(other).rotate(180).save(other)  # a real photo, different content
    s = serve([library])
    ids = photo_ids(s.store, library)
    for name, target in (("DSCN0010.jpg", secret), ("FujiFilm DS-7 (1).jpg", other), ("jolla.jpg", "/etc/passwd")):
        (library / name).unlink()
        (library / name).symlink_to(target)
        for route in ("thumb", "preview", "full"):
            status, _h, body = s.request("GET", f"/api/photos/{ids[name]}/{route}", token="header")
            assert status in (404, 409), (name, route, status)
            assert b"TOP-SECRET" not in body and b"root:" not in body and not body.startswith(b"\xff\xd8")
    # a link made after scoring is not a photo the database knows: it never gets an id
    (library / "new-link.jpg").symlink_to(other)
    listed = json.loads(s.request("GET", "/api/photos", token="header")[2])
    assert str(library / "new-link.jpg") not in {p["path"] for p in listed}
    assert s.cache.made == 0 and not (library / "DSCN0010.jpg.xmp").exists()


# -- decisions ----------------------------------------------------------------------------------


def test_ratings_and_labels_land_in_sidecars_and_the_database(serve, library, cli):
    s = serve([library])
    ids = photo_ids(s.store, library)
    photo = library / "DSCN0010.jpg"
    sidecar = library / "DSCN0010.jpg.xmp"
    # a sidecar another program wrote: its fields must survive
    sidecar.write_text(
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="darktable">\n'
        "   <dc:subject><rdf:Bag><rdf:li>harbour</rdf:li></rdf:Bag></dc:subject>\n"
        "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>\n",
        encoding="utf-8",
    )
    photo_bytes = photo.read_bytes()
    post = lambda pid, field, value: s.request("POST", f"/api/photos/{pid}/{field}",  # noqa: E731
                                               body=json.dumps({field: value}).encode(), token="header")
    status, _h, body = post(ids["DSCN0010.jpg"], "rating", 4)
    answer = json.loads(body)
    assert status == 200 and answer["rating"] == 4 and answer["written"] and answer["sidecar"] == str(sidecar)
    assert post(ids["DSCN0010.jpg"], "label", "Green")[0] == 200
    tags = exif_xmp(sidecar)
    assert tags["Rating"] == 4 and tags["Label"] == "Green"
    assert tags["CreatorTool"] == "darktable" and tags["Subject"] in ("harbour", ["harbour"])
    assert photo.read_bytes() == photo_bytes  # the photo itself is never written

    assert post(ids["jolla.jpg"], "rating", -1)[0] == 200
    assert exif_xmp(library / "jolla.jpg.xmp")["Rating"] == -1
    assert post(ids["jolla.jpg"], "rating", 0)[0] == 200
    assert read_sidecar(library / "jolla.jpg.xmp")["rating"] == "0"
    assert post(ids["DSCN0010.jpg"], "label", None)[0] == 200
    assert "Label" not in exif_xmp(sidecar) and exif_xmp(sidecar)["CreatorTool"] == "darktable"

    with Store(s.store.path) as other:  # another connection sees it: it is committed
        decided = other.decisions_for()
    assert decided[str(photo)]["rating"] == 4 and decided[str(photo)]["label"] is None
    assert decided[str(library / "jolla.jpg")]["rating"] == 0 and decided[str(photo)]["source"] == "review"
    listed = {p["name"]: p for p in json.loads(s.request("GET", "/api/photos", token="header")[2])}
    assert listed["DSCN0010.jpg"]["rating"] == 4 and listed["jolla.jpg"]["rating"] == 0
    top = {r["path"]: r for r in json.loads(cli("top", "20", "--json").stdout)}
    assert top[str(photo)]["rating"] == 4 and top[str(library / "jolla.jpg")]["rating"] == 0
    assert top[str(library / "FujiFilm DS-7 (1).jpg")]["rating"] is None
    table = cli("top", "20", env={"COLUMNS": "80"}).stdout  # the ★ column, at a pinned width
    assert "★" in table.splitlines()[1]
    [line] = [ln for ln in table.splitlines() if "DSCN0010.jpg" in ln]
    assert line.split()[3] == "4"
    assert cli("top", "20", str(library / "sub"), env={"COLUMNS": "80"}).stdout.count("★") == 0  # none decided there


def test_bad_decisions_are_refused_and_change_nothing(serve, library):
    s = serve([library])
    pid = photo_ids(s.store, library)["DSCN0010.jpg"]
    for field, body in (("rating", b'{"rating": 6}'), ("rating", b'{"rating": -2}'), ("rating", b'{"rating": "3"}'),
                        ("rating", b'{"rating": true}'), ("rating", b'{"rating": 2.5}'), ("rating", b'{"stars": 3}'),
                        ("rating", b"[3]"), ("rating", b"3 stars"), ("rating", b""), ("label", b'{"label": "Mauve"}'),
                        ("label", b'{"label": 3}'), ("label", b'{"label": "<script>"}')):  # fmt: skip
        status, _h, answer = s.request("POST", f"/api/photos/{pid}/{field}", body=body, token="header")
        assert status == 400, (body, status)
        assert "error" in json.loads(answer)
    assert s.request("GET", f"/api/photos/{pid}/rating", token="header")[0] == 405
    assert s.request("POST", f"/api/photos/{pid}/thumb", body=b"{}", token="header")[0] == 405
    assert not (library / "DSCN0010.jpg.xmp").exists() and s.store.decisions_for() == {}


def test_an_unmergeable_sidecar_is_left_alone_and_not_recorded(serve, library):
    s = serve([library])
    pid = photo_ids(s.store, library)["DSCN0010.jpg"]
    sidecar = library / "DSCN0010.jpg.xmp"
    sidecar.write_bytes(b"<x:xmpmeta><unclosed>")
    status, _h, body = s.request("POST", f"/api/photos/{pid}/rating", body=b'{"rating": 3}', token="header")
    assert status == 409 and "not well-formed" in json.loads(body)["error"]
    assert sidecar.read_bytes() == b"<x:xmpmeta><unclosed>" and s.store.decisions_for() == {}


def test_adobe_sidecar_style(serve, library):
    s = serve([library], sidecar="adobe")
    pid = photo_ids(s.store, library)["FujiFilm DS-7 (1).jpg"]
    assert s.request("POST", f"/api/photos/{pid}/rating", body=b'{"rating": 5}', token="header")[0] == 200
    assert exif_xmp(library / "FujiFilm DS-7 (1).xmp")["Rating"] == 5
    assert not (library / "FujiFilm DS-7 (1).jpg.xmp").exists()


# -- the list, groups and filters ---------------------------------------------------------------


def test_photo_list_matches_top_with_percentiles_and_groups(serve, library, cli):
    s = serve([library])
    listed = json.loads(s.request("GET", "/api/photos", token="header")[2])
    top = json.loads(cli("top", "50", str(library), "--json").stdout)
    assert [p["path"] for p in listed] == [r["path"] for r in top]
    assert [p["score"] for p in listed] == [r["score"] for r in top]
    assert [p["percentile"] for p in listed] == [r["percentile"] for r in top]
    assert {"id", "path", "score", "rating"} <= set(listed[0])
    assert not any(k.startswith("_") for p in listed for k in p)  # no sha256/size internals
    groups = json.loads(cli("groups", str(library), "--json").stdout)
    [burst] = groups
    by_path = {p["path"]: p for p in listed}
    members = [by_path[m["path"]] for m in burst["members"]]
    assert {m["path"] for m in burst["members"]} == {str(library / n) for n in BURST}
    assert len({m["group"] for m in members}) == 1 and all(m["group_size"] == 2 for m in members)
    assert [m["best"] for m in members] == [m["best"] for m in burst["members"]]
    assert sum(p["best"] for p in listed) == 1  # singletons are not "best of a burst"


def test_filters_narrow_the_list_as_top_does(serve, library, cli):
    s = serve([library])
    everything = json.loads(s.request("GET", "/api/photos", token="header")[2])
    median = sorted(p["score"] for p in everything)[len(everything) // 2]
    cases = [
        (f"min_score={median}", ["--min-score", str(median)]),
        ("camera=nikon", ["--camera", "nikon"]),
        ("folder=burst", ["--folder", "burst"]),
        ("since=2008&until=2008-12", ["--since", "2008", "--until", "2008-12"]),
    ]
    for query, options in cases:
        got = json.loads(s.request("GET", "/api/photos?" + query, token="header")[2])
        want = json.loads(cli("top", "50", str(library), *options, "--json").stdout)
        assert [p["path"] for p in got] == [r["path"] for r in want], query
        assert 0 < len(got) < len(everything), query
    burst = json.loads(s.request("GET", "/api/photos?folder=burst", token="header")[2])
    assert all(p["group_size"] == 2 for p in burst)  # filters never regroup
    status, _h, body = s.request("GET", "/api/photos?since=yesterday", token="header")
    assert status == 400 and "since" in json.loads(body)["error"]
    info = json.loads(s.request("GET", "/api/info", token="header")[2])
    assert info["photos"] == len(ALL) and info["groups"] == len(ALL) - 1 and info["model"] == "aadb"
    assert any("NIKON" in c.upper() for c in info["cameras"]) and str(library / "burst") in info["folders"]


# -- pictures -----------------------------------------------------------------------------------


def test_thumbnails_and_previews_are_made_once_in_the_data_folder(serve, library, tmp_path):
    s = serve([library])
    ids = photo_ids(s.store, library)
    before = listing(library)
    assert s.cache.root == tmp_path / "xdg-data" / "charm" / "review-cache"  # charm's data folder (platformdirs)
    sizes = {}
    for name, pid in ids.items():
        status, headers, body = s.request("GET", f"/api/photos/{pid}/thumb", token="query")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        sizes[name] = jpeg(body).size
        assert max(sizes[name]) <= 480
    made = s.cache.made
    assert made == len(ALL)  # one decode per photo made its thumbnail and its preview
    for pid in ids.values():
        assert s.request("GET", f"/api/photos/{pid}/thumb", token="query")[0] == 200
        assert s.request("GET", f"/api/photos/{pid}/preview", token="query")[0] == 200
    assert s.cache.made == made  # served from the cache
    assert len(list(s.cache.root.rglob("*.jpg"))) == 2 * len(ALL)
    assert listing(library) == before  # nothing beside the photos
    assert sizes["sub/landscape_6.jpg"] == (480, 360)  # stored 450x600 + Orientation 6: shown landscape
    assert sizes["DSCN0010.jpg"] == (480, 360) and sizes["FujiFilm DS-7 (1).jpg"] == (320, 240)
    preview = jpeg(s.request("GET", f"/api/photos/{ids['jolla.jpg']}/preview", token="query")[2])
    assert preview.size == (2048, 1536)  # 3264x2448 scaled to the preview's long side
    full = jpeg(s.request("GET", f"/api/photos/{ids['jolla.jpg']}/full", token="query")[2])
    assert full.size == (3264, 2448)  # Z: 100 %


def test_explain_overlay_tints_the_kept_cells(serve, library):
    s = serve([library])
    pid = photo_ids(s.store, library)["DSCN0010.jpg"]
    preview = jpeg(s.request("GET", f"/api/photos/{pid}/preview", token="query")[2]).convert("RGB")
    status, _h, body = s.request("GET", f"/api/photos/{pid}/explain", token="query")
    assert status == 200
    overlay = jpeg(body).convert("RGB")
    assert overlay.size == preview.size
    [score] = [r for r in s.store.scores_for_sha(s.store.photo_by_path(str(library / "DSCN0010.jpg"))["sha256"])
               if r["model"] == "aadb"]  # fmt: skip
    kept = json.loads(score["kept_cells"])
    assert kept, "the conformance checkpoint keeps some cells"
    from charmcli.cull.explain import cell_boxes

    boxes = cell_boxes(kept, score["cell_size"], (score["input_width"], score["input_height"]), preview.size)
    x0, y0, x1, y1 = boxes[0]
    inside = np.asarray(overlay.crop((x0 + 3, y0 + 3, x1 - 3, y1 - 3)), dtype=np.float64)
    plain = np.asarray(preview.crop((x0 + 3, y0 + 3, x1 - 3, y1 - 3)), dtype=np.float64)
    # amber tint (255, 196, 0) at alpha 72: blue drops, red rises inside a kept cell
    assert inside[..., 2].mean() < plain[..., 2].mean() - 10 and inside[..., 0].mean() > plain[..., 0].mean()


# -- binding ------------------------------------------------------------------------------------


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of LISTEN sockets on ``port`` from /proc/net/tcp{,6} (Linux)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _remote, state = line.split()[1:4]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":
                found.append(address)
    return found


def test_binds_to_loopback_only(serve, library):
    s = serve([library])
    assert s.host == "127.0.0.1"
    if os.path.exists("/proc/net/tcp"):
        assert _listening_addresses(s.port) == ["0100007F"]  # 127.0.0.1, and nothing on IPv6 or 0.0.0.0
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        own = probe.getsockname()[0]
    except OSError:
        own = None
    finally:
        probe.close()
    if own and not own.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((own, s.port), timeout=2).close()


def test_photos_scored_while_serving_appear_on_the_next_list(serve, library, cli, model_args):
    s = serve([library])
    assert len(json.loads(s.request("GET", "/api/photos", token="header")[2])) == len(ALL)
    shutil.copy2(library / "DSCN0010.jpg", library / "sub" / "copy.jpg")  # known content: no model load
    assert cli("score", library, *model_args, "--quiet").exit_code == 0  # another connection commits
    listed = json.loads(s.request("GET", "/api/photos", token="header")[2])
    assert str(library / "sub" / "copy.jpg") in {p["path"] for p in listed} and len(listed) == len(ALL) + 1
    new_id = s.store.photo_by_path(str(library / "sub" / "copy.jpg"))["id"]
    assert s.request("GET", f"/api/photos/{new_id}/thumb", token="header")[0] == 200


def test_a_photo_scored_while_serving_is_served_before_any_list(serve, library, cli, model_args):
    """A page may ask for a photo the desk has not listed yet (a second window, a reload): an id it
    does not know makes it re-read the store before it answers 404."""
    s = serve([library])
    copy = library / "sub" / "copy.jpg"
    shutil.copy2(library / "DSCN0010.jpg", copy)  # known content: no model load
    assert cli("score", library, *model_args, "--quiet").exit_code == 0  # another connection commits
    new_id = s.store.photo_by_path(str(copy))["id"]
    status, _h, body = s.request("GET", f"/api/photos/{new_id}", token="header")  # no list in between
    assert status == 200 and json.loads(body)["path"] == str(copy)
    unknown = new_id + 1000
    status, headers, body = s.request("GET", f"/api/photos/{unknown}/thumb", token="header")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": f"no photo {unknown} on this desk"}


def test_a_file_name_that_is_not_utf8(serve, library, cli, model_args):
    raw = os.fsencode(library) + b"/caf\xe9.jpg"  # Latin-1 bytes, as old cameras and Windows shares write them
    shutil.copyfile(library / "DSCN0010.jpg", raw)
    assert cli("score", library, *model_args, "--quiet").exit_code == 0
    s = serve([library])
    listed = json.loads(s.request("GET", "/api/photos", token="header")[2])  # valid JSON, \\udce9 escaped
    [odd] = [p for p in listed if p["name"].startswith("caf")]
    assert odd["name"] == "caf\\xe9.jpg" and os.fsencode(odd["path"]) == raw
    assert s.request("GET", f"/api/photos/{odd['id']}/thumb", token="header")[0] == 200
    status, _h, body = s.request("POST", f"/api/photos/{odd['id']}/rating", body=b'{"rating": 2}', token="header")
    assert status == 200 and json.loads(body)["rating"] == 2
    assert exif_xmp(os.fsdecode(raw + b".xmp"))["Rating"] == 2


def test_explain_of_a_short_path_score_says_so(serve, library):
    """A photo with few enough tokens takes the short path: every cell at full resolution, so
    there are no kept cells to mark; the desk says that, as `charm show` does, not that the
    model keeps none."""
    s = serve([library])
    short = []
    for name, pid in photo_ids(s.store, library).items():
        sha = s.store.photo_by_path(str(library / name))["sha256"]
        [score] = [r for r in s.store.scores_for_sha(sha) if r["model"] == "aadb"]
        if score["token_path"] == "short":
            short.append(pid)
    assert short, "the library holds a photo small enough for the short path"
    for pid in short:
        status, _h, body = s.request("GET", f"/api/photos/{pid}/explain", token="query")
        message = json.loads(body)["error"]
        assert status == 404 and "short path" in message and "without them" not in message
