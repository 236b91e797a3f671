"""EAT (ACMMM 2023): a second model family beside Charm.

A Deformable Attention Transformer with EAT's learned reference points, on 224x224 inputs:
:mod:`.preprocess` (the official resize + normalise), :mod:`.network` (DAT + EAT attention),
:mod:`.checkpoint` (plain state dicts the user brings, read without running code) and
:mod:`.scorer` (the same ``prepare`` / ``score_prepared`` face as Charm's scorer).
"""
