#!/usr/bin/env python3
"""Benchmark face alignment on real frames (the Pexels video): where the preparation time goes.

Stages per frame: dlib HOG detection (upsample 0; the default, which upsamples only when
the first pass finds no face), 68-point landmarks, similarity fit, and the
crop resampling. The resampling uses PIL's affine transform; the reference measured in the same run
is ``skimage.transform.warp`` (bilinear) on the same frames and transforms, and the report gives the
ratio. Writes ``<out>/bench_align.json`` (atomically) and prints a summary.

Usage: ``python bench/bench_align.py [--out DIR] [--size 224] [--frames 48]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from au_lib.data.align import FaceAligner, warp_to_crop  # noqa: E402
from au_lib.data.sources import read_video  # noqa: E402
from au_lib.data.video import pexels_video_path  # noqa: E402
from au_lib.provenance import atomic_write_json, make_provenance  # noqa: E402


def per_frame(fn, items) -> float:
    t = time.perf_counter()
    for it in items:
        fn(it)
    return (time.perf_counter() - t) / len(items)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench", help="output folder")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=48)
    args = ap.parse_args(argv)
    from skimage.transform import SimilarityTransform, warp

    t0 = time.perf_counter()
    video = read_video(pexels_video_path())
    frames = [video[k] for k in np.linspace(0, len(video) - 1, args.frames).astype(int)]
    al0 = FaceAligner(args.size, upsample=0)
    al1 = FaceAligner(args.size, upsample=1)
    al0.detect(frames[0]), al1.detect(frames[0])  # load the models outside the timings
    boxes = [al0.detect(f)[0][0] for f in frames]
    lms = [al0.landmarks(f, b) for f, b in zip(frames, boxes)]
    mats = [al0.transform_for(lm) for lm in lms]
    pairs = list(zip(frames, mats))
    res = {
        "detect_upsample0_ms": 1e3 * per_frame(al0.detect, frames),
        "detect_default_ms": 1e3 * per_frame(al1.detect, frames),  # upsample only if needed
        "landmarks_ms": 1e3 * per_frame(lambda fb: al0.landmarks(*fb), list(zip(frames, boxes))),
        "similarity_fit_ms": 1e3 * per_frame(al0.transform_for, lms),
        "warp_pil_ms": 1e3 * per_frame(lambda p: warp_to_crop(p[0], p[1], args.size), pairs),
        "warp_skimage_reference_ms": 1e3 * per_frame(
            lambda p: warp(p[0], SimilarityTransform(p[1]).inverse, output_shape=(args.size, args.size), order=1),
            pairs),
    }
    res["warp_speedup_vs_skimage"] = res["warp_skimage_reference_ms"] / res["warp_pil_ms"]
    res["pipeline_frames_per_s_upsample0"] = 1e3 / (res["detect_upsample0_ms"] + res["landmarks_ms"]
                                                     + res["similarity_fit_ms"] + res["warp_pil_ms"])
    frame_shape = list(frames[0].shape)
    out = {"bench": "align", "size": args.size, "frames": args.frames, "frame_shape": frame_shape,
           "results": res, "provenance": make_provenance("bench", time.perf_counter() - t0, "cpu")}
    path = atomic_write_json(Path(args.out) / "bench_align.json", out)
    for k, v in res.items():
        print(f"{k:34s} {v:8.2f}")
    print(f"(frames {frame_shape[1]}x{frame_shape[0]}, crop {args.size}; written to {path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
