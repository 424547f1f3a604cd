#!/usr/bin/env python3
"""Benchmark ``au_lib.detect``: frames per second on CPU, batched against frame by frame, and memory on a
long video.

1. **Speed** on the first ``--frames`` frames of the Pexels clip (640x360, one face), with a detector at
   the ``cpu`` size (the learnability bar's ResNet-10 on 64 px crops) and at the ``paper`` size
   (ResNet-10 on 224 px crops); random weights (speed does not depend on them). Each is run end to end
   (decode, dlib face detection and landmarks, alignment, network) with ``batch=32`` and with
   ``batch=1`` (the same model frame by frame) in the same run, and the network alone on the same
   aligned crops, batched and one by one; the report gives frames/s and the batched/frame-by-frame ratio.
2. **Memory**: a synthetic ``--long-frames`` video (default 2,000 frames of 128x96 px, no face, written
   with PyAV; the issue's 10,000 with ``--long-frames 10000``, about two minutes) goes through
   ``detect``; the resident set size (psutil, sampled every 20 ms) is recorded after a warm-up and at
   its peak. The bound checked: the peak exceeds the warm-up RSS by less than ``--rss-bound-mb``
   (default 64 MiB), while holding the decoded frames would take ``frames x 128 x 96 x 3`` bytes
   (352 MiB at 10,000 frames). The output table itself grows by about 1 kB per frame.

Writes ``<out>/bench_detect.json`` (atomically; ``--out`` defaults to ``bench/results`` if that folder
exists, else ``runs/bench``) and prints a summary. Run it alone (``flock``): it measures time.

Usage: ``python bench/bench_detect.py [--out DIR] [--frames 64] [--long-frames 2000]``
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from au_lib.data.media import open_media, write_video  # noqa: E402
from au_lib.data.video import pexels_video_path  # noqa: E402
from au_lib.detect import Detector, detect, synthau_preprocess  # noqa: E402
from au_lib.detect.file import build_network  # noqa: E402
from au_lib.detect.run import FaceAligner, face_crop  # noqa: E402
from au_lib.facs import BP4D_AUS  # noqa: E402
from au_lib.provenance import atomic_write_json, make_provenance  # noqa: E402

SIZES = {"cpu": 64, "paper": 224}


def random_detector(image_size: int) -> Detector:
    import torch

    torch.manual_seed(0)
    kwargs = {"layers": [1, 1, 1, 1], "num_classes": len(BP4D_AUS)}
    return Detector(build_network("torchvision-resnet", kwargs), arch={"name": "torchvision-resnet", "kwargs": kwargs},
                    aus=BP4D_AUS, thresholds=[0.5] * len(BP4D_AUS), preprocess=synthau_preprocess(image_size))


def speed(clip: Path, crops_of: dict, det: Detector, batch: int) -> dict:
    import torch

    t = time.perf_counter()
    table = detect(clip, det, batch=batch, progress=False)
    end_to_end = len(table) / (time.perf_counter() - t)
    crops = crops_of[det.image_size]
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(crops), batch):
            det.probabilities(crops[i:i + batch])
    network = len(crops) / (time.perf_counter() - t)
    return {"end_to_end_fps": end_to_end, "network_fps": network, "frames": len(table), "faces": int(table["face"].sum())}


class RssSampler:
    """Peak resident set size of this process, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.02) -> None:
        import psutil

        self.proc, self.every, self.peak, self._stop = psutil.Process(), every, 0, threading.Event()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = ROOT / "bench" / "results" if (ROOT / "bench" / "results").is_dir() else Path("runs/bench")
    ap.add_argument("--out", default=str(default_out), help="output folder")
    ap.add_argument("--frames", type=int, default=64, help="Pexels frames for the speed part")
    ap.add_argument("--long-frames", type=int, default=2_000, help="frames of the synthetic long video")
    ap.add_argument("--rss-bound-mb", type=float, default=64.0, help="allowed RSS growth on the long video (MiB)")
    args = ap.parse_args(argv)
    import torch

    t0 = time.perf_counter()
    res: dict = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="bench_detect_") as tmp:
        clip = Path(tmp) / "pexels_head.mp4"
        frames = [f.image for f in itertools.islice(open_media(pexels_video_path()), args.frames)]
        write_video(clip, iter(frames), fps=24)
        aligner = FaceAligner(64)
        dets = {name: random_detector(size) for name, size in SIZES.items()}
        crops_of = {}
        for det in dets.values():
            faces = [face_crop(f, det, aligner) for f in frames]
            crops_of[det.image_size] = np.stack([c.crop for c in faces if c is not None])
        del frames
        detect(clip, dets["cpu"], progress=False)  # warm-up: dlib models, lazy imports
        for name, det in dets.items():
            batched, single = speed(clip, crops_of, det, 32), speed(clip, crops_of, det, 1)
            res[name] = {"image_size": det.image_size, "batch32": batched, "batch1": single,
                         "end_to_end_ratio": batched["end_to_end_fps"] / single["end_to_end_fps"],
                         "network_ratio": batched["network_fps"] / single["network_fps"]}
        n, h, w = args.long_frames, 96, 128
        long = Path(tmp) / "long.mp4"
        grad = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        write_video(long, (np.broadcast_to((grad + 3 * k) % 256, (h, w, 3)).astype(np.uint8) for k in range(n)), fps=25)
        det = dets["cpu"]
        t = time.perf_counter()
        with RssSampler() as rss:
            table = detect(long, det, batch=32, progress=False)
        held = n * h * w * 3 / 2**20
        growth = (rss.peak - rss.start) / 2**20
        res["long_video"] = {"frames": n, "decoded": len(table), "frame_shape": [h, w, 3],
                             "seconds": time.perf_counter() - t, "rss_start_mb": rss.start / 2**20,
                             "rss_peak_mb": rss.peak / 2**20, "rss_growth_mb": growth,
                             "frames_if_held_mb": held, "bound_mb": args.rss_bound_mb,
                             "within_bound": bool(growth < args.rss_bound_mb)}
    out = {"bench": "detect", "frames": args.frames, "results": res,
           "provenance": make_provenance("bench", time.perf_counter() - t0, "cpu")}
    path = atomic_write_json(Path(args.out) / "bench_detect.json", out)
    for name in SIZES:
        r = res[name]
        print(f"{name:5s} ({r['image_size']:3d} px): end to end {r['batch32']['end_to_end_fps']:6.1f} fps batched, "
              f"{r['batch1']['end_to_end_fps']:6.1f} frame by frame (x{r['end_to_end_ratio']:.2f}); network alone "
              f"{r['batch32']['network_fps']:7.1f} vs {r['batch1']['network_fps']:7.1f} fps (x{r['network_ratio']:.2f})")
    lv = res["long_video"]
    print(f"long video: {lv['decoded']} frames {w}x{h} in {lv['seconds']:.0f} s; RSS {lv['rss_start_mb']:.0f} -> "
          f"peak {lv['rss_peak_mb']:.0f} MiB (+{lv['rss_growth_mb']:.1f} MiB; bound {lv['bound_mb']:.0f} MiB; the frames "
          f"would take {lv['frames_if_held_mb']:.0f} MiB): {'within' if lv['within_bound'] else 'OVER'} the bound")
    print(f"(torch threads {res['threads']}; written to {path})")
    return 0 if lv["within_bound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
