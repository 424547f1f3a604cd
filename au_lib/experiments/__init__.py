"""Experiments: the evaluation protocol over folds, and resumable sweeps (ablations)."""
