#!/usr/bin/env python3
"""Benchmark SynthAU rendering: frames per second for RGB + depth + thermal at the cpu size (64x64).

References measured in the same run: the whole renderer with the PyTorch rasteriser instead of the C
kernel (ratio reported), and the rasteriser alone against a naive per-triangle loop (the obvious
Python implementation) on a few frames. Target (SynthAU v3): 500 frames/s in one process on 2 cores.
Writes ``<out>/bench_synth.json`` (atomically) and prints a summary.

Usage: ``python bench/bench_synth.py [--out DIR] [--size 64] [--frames 384] [--batch 96] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from au_lib.data.synth.generate import face_model, identity, sequences  # noqa: E402
from au_lib.data.synth.raster import Fragments, rasterize  # noqa: E402
from au_lib.data.synth.render import SubjectRenderer  # noqa: E402


def naive_rasterize(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> Fragments:
    """Reference: loop over frames and triangles, vectorised only within each triangle's box."""
    B = verts.shape[0]
    zbuf = torch.full((B, height, width), float("-inf"))
    tri_id = torch.full((B, height, width), -1, dtype=torch.int64)
    bary = torch.zeros((B, height, width, 3))
    for b in range(B):
        for f, (i, j, k) in enumerate(faces.tolist()):
            p = verts[b, [i, j, k]]
            x0, x1 = int(np.ceil(float(p[:, 0].min()))), int(np.floor(float(p[:, 0].max())))
            y0, y1 = int(np.ceil(float(p[:, 1].min()))), int(np.floor(float(p[:, 1].max())))
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
            if x1 < x0 or y1 < y0:
                continue
            ys, xs = torch.meshgrid(torch.arange(y0, y1 + 1.0), torch.arange(x0, x1 + 1.0), indexing="ij")
            (ax, ay, az), (bx, by, bz), (cx, cy, cz) = p.tolist()
            area = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
            if abs(area) < 1e-9:
                continue
            w0 = ((bx - xs) * (cy - ys) - (cx - xs) * (by - ys)) / area
            w1 = ((cx - xs) * (ay - ys) - (ax - xs) * (cy - ys)) / area
            w2 = 1 - w0 - w1
            inside = (w0 >= -1e-5) & (w1 >= -1e-5) & (w2 >= -1e-5)
            z = w0 * az + w1 * bz + w2 * cz
            cur = zbuf[b, y0:y1 + 1, x0:x1 + 1]
            win = inside & (z > cur)
            cur[win] = z[win]
            tri_id[b, y0:y1 + 1, x0:x1 + 1][win] = f
            bary[b, y0:y1 + 1, x0:x1 + 1][win] = torch.stack([w0, w1, w2], -1)[win]
    return Fragments(tri_id, bary, zbuf)


def _worker(args_tuple) -> tuple[int, float]:
    """Render ``n`` frames in a fresh single-threaded process; return (frames, seconds)."""
    n, size, batch, offset = args_tuple
    torch.set_num_threads(1)
    model = face_model("cpu")
    ident = identity("bp4d", "B001", 0, model)
    seq = sequences("bp4d", "B001", 0, 1, n + offset, ident)[0]
    rend = SubjectRenderer(model, ident)
    au = torch.tensor(seq.au[offset:], dtype=torch.float32)
    pose = torch.tensor(seq.pose[offset:], dtype=torch.float32)
    with torch.no_grad():
        rend.render(au[:batch], pose[:batch], seq.scene, size)  # warm-up
        t = time.perf_counter()
        for a in range(0, n, batch):
            rend.render(au[a:a + batch], pose[a:a + batch], seq.scene, size)
    return n, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench", help="output folder")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=384)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--reference-frames", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--processes", type=int, default=2,
                    help="also measure this many single-threaded worker processes in parallel (0: skip)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = face_model(args.device)
    ident = identity("bp4d", "B001", 0, model)
    seq = sequences("bp4d", "B001", 0, 1, args.frames, ident)[0]
    rend = SubjectRenderer(model, ident)
    au = torch.tensor(seq.au, dtype=torch.float32)
    pose = torch.tensor(seq.pose, dtype=torch.float32)

    def run_all(n):
        for a in range(0, n, args.batch):
            out = rend.render(au[a:a + args.batch], pose[a:a + args.batch], seq.scene, args.size)
        if args.device != "cpu":
            torch.cuda.synchronize()
        return out

    with torch.no_grad():
        run_all(min(args.batch, args.frames))  # warm-up
        t, c = time.perf_counter(), time.process_time()
        run_all(args.frames)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        fps = args.frames / wall
        fps_cpu = args.frames / cpu  # frames per CPU-second: unaffected by other processes on a shared machine
        os.environ["AU_RASTER_BACKEND"] = "torch"  # reference: the same renderer, PyTorch rasteriser
        try:
            t = time.perf_counter()
            run_all(args.frames)
            fps_torch = args.frames / (time.perf_counter() - t)
        finally:
            del os.environ["AU_RASTER_BACKEND"]
        # rasteriser alone vs the naive reference, same frames
        n_ref = args.reference_frames
        scr, _ = rend.geometry(au[:n_ref], pose[:n_ref], args.size)
        faces = model.topology.faces
        t = time.perf_counter()
        fast = rasterize(scr, faces, args.size, args.size)
        t_fast = time.perf_counter() - t
        if args.device == "cpu":
            t = time.perf_counter()
            ref = naive_rasterize(scr, faces, args.size, args.size)
            t_ref = time.perf_counter() - t
            agree = float((ref.tri == fast.tri).float().mean())
        else:
            t_ref, agree = float("nan"), float("nan")
    fps_proc = None
    if args.processes and args.device == "cpu":
        from concurrent.futures import ProcessPoolExecutor

        per = args.frames // args.processes
        t = time.perf_counter()
        with ProcessPoolExecutor(args.processes) as ex:
            done = list(ex.map(_worker, [(per, args.size, args.batch, k * per) for k in range(args.processes)]))
        fps_proc = sum(n for n, _ in done) / max(s for _, s in done)  # frames over the slowest worker's time
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res = {"size": args.size, "frames": args.frames, "batch": args.batch, "threads": torch.get_num_threads(),
           "device": args.device, "fps_rgb_depth_thermal": fps, "wall_s": wall, "cpu_s": cpu,
           "frames_per_cpu_second": fps_cpu, "loadavg_1min": None,
           "raster_fast_s_per_frame": t_fast / n_ref, "raster_naive_s_per_frame": t_ref / n_ref,
           "speedup_vs_naive": t_ref / t_fast, "triangle_id_agreement": agree,
           "fps_torch_rasteriser": fps_torch, "ratio_vs_torch_rasteriser": fps / fps_torch}
    res["loadavg_1min"] = load
    res["processes"] = args.processes
    res["fps_processes"] = fps_proc
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bench_synth.json.tmp"
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out / "bench_synth.json")
    print(f"SynthAU render ({args.size}px, rgb+depth+thermal, batch {args.batch}, {res['threads']} threads, "
          f"{args.device}): {fps:.0f} frames/s wall, {fps_cpu:.0f} frames per CPU-second "
          f"(target: 500 frames/s in one process on 2 cores); {res['ratio_vs_torch_rasteriser']:.2f}x the same "
          f"renderer with the PyTorch rasteriser ({fps_torch:.0f} frames/s)")
    if fps_proc is not None:
        print(f"{args.processes} single-threaded processes in parallel: {fps_proc:.0f} frames/s")
    print(f"rasteriser vs naive per-triangle loop: {res['speedup_vs_naive']:.0f}x faster "
          f"(triangle ids agree on {100 * agree:.2f}% of pixels); load average {load:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
