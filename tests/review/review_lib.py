"""Helpers for the review tests: the small real library and a client for a served desk."""

from __future__ import annotations

import http.client
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from starlette.applications import Starlette

from charmcli.review.desk import Desk
from charmcli.review.images import ImageCache
from charmcli.store import Store

from shared_paths import PHOTOS

ORIGINALS = {
    "DSCN0010.jpg": "DSCN0010.jpg",
    "FujiFilm DS-7 (1).jpg": "FujiFilm DS-7 (1).jpg",
    "jolla.jpg": "jolla.jpg",
    "sub/landscape_6.jpg": "exif_orientation/landscape_6.jpg",
    "burst/chelsea_1.png": "chelsea_alpha_vignette.png",
}
BURST = ("burst/chelsea_1.png", "burst/chelsea_2.png")
ALL = (*ORIGINALS, "burst/chelsea_2.png")
BASE_MTIME = 1_600_000_000  # 2020-09-13; each photo an hour apart, the burst 1 s apart


def make_library(root: Path) -> Path:
    for name, source in ORIGINALS.items():
        src = PHOTOS / source
        if not src.is_file():
            pytest.skip(f"{src} is absent (the shared test data sits beside the repository)")
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / name)
    with Image.open(root / BURST[0]) as im:
        ImageEnhance.Brightness(im.convert("RGBA")).enhance(1.04).save(root / BURST[1])
    for i, name in enumerate(ALL):
        t = BASE_MTIME + (i * 3600 if name not in BURST else 10 * 3600 + BURST.index(name))
        os.utime(root / name, (t, t))
    return root


@dataclass
class Served:
    """A desk served by uvicorn on a loopback port in a thread of the test process."""

    host: str
    port: int
    token: str
    desk: Desk
    cache: ImageCache
    store: Store
    app: Starlette

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def request(self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
                token: str | None = "header") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One raw request: ``path`` goes on the wire exactly as given (no client normalisation).

        ``token="header"`` sends the run's token as ``X-Charm-Token``, ``"query"`` appends
        ``token=`` to the path, None sends none, any other string is sent as a (wrong) header.
        """
        sent = dict(headers or {})
        if token == "header":
            sent["X-Charm-Token"] = self.token
        elif token == "query":
            path += ("&" if "?" in path else "?") + f"token={self.token}"
        elif token is not None:
            sent["X-Charm-Token"] = token
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()



def photo_ids(store: Store, library: Path) -> dict[str, int]:
    """Library-relative name → photo id, from the store (not from the server under test)."""
    return {name: store.photo_by_path(str(library / name))["id"] for name in ALL}


