"""Fixtures for ``charm review``: a small real library, scored once, and a desk served in-process.

The library is real photos from ../shared/photos (copied, never touched there) plus one derived
frame, so that it holds a burst:

* ``DSCN0010.jpg`` (Nikon, EXIF date), ``FujiFilm DS-7 (1).jpg`` (a name with spaces and
  parentheses), ``jolla.jpg`` (8 MP: previews are downscaled, ``/full`` is not);
* ``sub/landscape_6.jpg``: stored 450x600 with EXIF Orientation 6, displayed 600x450;
* ``burst/chelsea_1.png`` and ``burst/chelsea_2.png``: the same RGBA photo and a slightly
  brightened copy, no EXIF date, file mtimes 1 s apart: one burst by the mtime fallback (their
  embeddings are near-identical even with random weights).

It is scored once per session with the small conformance checkpoint (random weights, fast); each
test gets its own copy and a database that already knows the content, so re-registering costs
no model load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from review_lib import Served, make_library
from scored_template import make_template, registered_copy

from charmcli.review.app import create_app
from charmcli.review.desk import Desk
from charmcli.review.images import ImageCache
from charmcli.review.server import bind_loopback, new_token
from charmcli.store import Store

from shared_paths import conformance_model_args


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    return conformance_model_args()  # default decode policy (max1024): multi-scale, so kept cells exist


@pytest.fixture(scope="session")
def template(tmp_path_factory, model_args) -> tuple[Path, Path]:
    """(pristine library, database holding its scores but no photo rows), made once per session."""
    return make_template(tmp_path_factory.mktemp("review-lib"), make_library, model_args)


@pytest.fixture
def library(tmp_path, template, _private_db, model_args) -> Path:
    """This test's copy of the scored library (mtimes kept), registered in its private database."""
    registered_copy(template, tmp_path / "library", _private_db, model_args)
    return tmp_path / "library"


@pytest.fixture
def serve(tmp_path, _private_db) -> Iterator:
    """``serve(paths, **desk_options)`` → :class:`Served`; stopped (and checked stopped) at teardown."""
    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread, Store]] = []

    def start(paths, model: str = "aadb", **options) -> Served:
        store = Store(_private_db)
        desk = Desk(store, model, [str(p) for p in paths], **options)
        cache = ImageCache()
        token = new_token()
        sock = bind_loopback(0)
        app = create_app(desk, cache, token)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        running.append((server, thread, store))
        host, port = sock.getsockname()[:2]
        return Served(host, port, token, desk, cache, store, app)

    yield start
    for server, thread, store in running:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"
        store.close()
