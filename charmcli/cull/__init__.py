"""Culling: bursts and near-duplicates, star ratings, XMP sidecars, a contact sheet, explanations.

Everything here works on plain data (numpy embeddings, scores, PIL images, small dataclasses) and
never imports torch, so culling a library that is already scored needs no model and no GPU.
Modules: :mod:`~charmcli.cull.groups`, :mod:`~charmcli.cull.ratings`, :mod:`~charmcli.cull.xmp`,
:mod:`~charmcli.cull.report`, :mod:`~charmcli.cull.explain`.
"""
