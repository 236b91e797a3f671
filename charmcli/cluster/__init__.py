"""``charm cluster``: score millions of photos with Ray Data, Parquet out, then import into the store.

Layout (imports only downward; Ray is imported by :mod:`charmcli.cluster.driver` alone, and only
when a job has work to do):

* :mod:`~charmcli.cluster.inputs`: what to score (folders, files, manifests, ``file://``/``s3://`` URLs);
* :mod:`~charmcli.cluster.output`: the Parquet schema, atomic part files, resume (path/sha256/status only);
* :mod:`~charmcli.cluster.stages`: the per-row work as plain classes (read → hash → decode → tokenize;
  network; rows), testable on plain arrays without Ray, calling the same code as ``charm score``;
* :mod:`~charmcli.cluster.driver`: the Ray Data pipeline (CPU actor pool → network actor pool → writer);
* :mod:`~charmcli.cluster.importer`: output rows → the SQLite store, so ``top``/``groups``/``rate`` work;
* the Typer sub-app is CLI glue, in :mod:`charmcli.cli.cluster`.
"""
