"""Plotting. ``common`` holds shared helpers; each topic has its own module (data, mcm, tcae, warp, ablation)."""
