"""Data: the embedded synthetic dataset (SynthAU), loaders for BP4D, BP4D+ and DISFA, folds.

Every dataset yields the same sample dictionary (see ``shared/DESIGN.md`` and :mod:`au_lib.data.sample`):
``rgb`` (3xHxW float in [0, 1]), optional ``depth``/``thermal`` (1xHxW), ``au`` (1/0/-1 per AU of the
dataset's list), ``au_intensity`` where known, ``subject``, ``sequence``, ``frame``, ``pose``.
"""
