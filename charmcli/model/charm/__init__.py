"""Charm (CVPR 2025): a DINOv2 ViT on a native-resolution, multi-scale token sequence.

:mod:`.specs` (the published models and their scoring rules, torch-free), :mod:`.tokenizer`,
:mod:`.network`, :mod:`.checkpoint` (+ :mod:`.safe_pickle`, :mod:`.activations`: official files
read without running their code) and :mod:`.scorer` (:class:`~.scorer.CharmScorer`).

Importing this package imports no torch: the registry reads the specs from here.
"""
