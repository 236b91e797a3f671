"""``charm review``: a local culling desk in the browser over the scored library.

Layout (imports only downward, nothing here imports torch):

* :mod:`.desk` — what the desk shows and changes: the selection (store), groups
  (:mod:`charmcli.cull.groups`), library percentiles, and decisions written to XMP sidecars
  through :mod:`charmcli.cull.xmp` and recorded in the store;
* :mod:`.images` — thumbnails and previews, made once from the photo and cached in charm's data
  folder (never beside the photos), plus the full-size and explain renderings;
* :mod:`.app` — the HTTP face: token gate, host check, routes (photo ids in, never paths);
* :mod:`.server` — loopback socket, uvicorn, clean shutdown;
* the Typer command is :mod:`charmcli.cli.review` (the CLI sits above this package);
* ``static/`` — the page: plain HTML/CSS/JS, vendored, no build step, nothing from a CDN.
"""
