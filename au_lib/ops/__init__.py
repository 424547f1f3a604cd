"""Operators: the bilinear displacement warp (hand-written backward, GPU kernel) and MAE masking."""
