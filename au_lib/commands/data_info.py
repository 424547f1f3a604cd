"""``au-lib data info DIR``: describe a SynthAU cache folder: counts, occurrence, co-occurrence, modality stats."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "describe a generated dataset folder (counts, AU occurrence and co-occurrence, modality statistics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a SynthAU view folder (holding manifest.json) or a cache root holding several")
    parser.add_argument("--top", type=int, default=8, help="AU pairs to list by co-occurrence (default 8)")


def describe(folder: Path, top: int = 8) -> str:
    """A text report for one SynthAU view folder."""
    import numpy as np

    from au_lib.data.synth import cache
    from au_lib.data.synth.config import get_view
    from au_lib.data.synth.sequences import facs_level
    from au_lib.facs import PYFEAT_MESH_AUS

    manifest = cache.read_json(folder / "manifest.json")
    if not manifest or "key" not in manifest:
        raise FileNotFoundError(f"{folder}: no SynthAU manifest.json (generate with `python -m au_lib data synth`)")
    key = manifest["key"]
    view = get_view(key["view"])
    cols = [PYFEAT_MESH_AUS.index(a) for a in view.aus]
    labels, stats = [], {m: [] for m in ("rgb", "depth", "thermal")}
    subjects, bad = [], []
    for name, entry in sorted(manifest["shards"].items()):
        try:
            arr = cache.read_shard(folder / entry["file"], entry["sha256"], entry["bytes"])
        except cache.CorruptShardError as exc:
            bad.append(str(exc))
            continue
        subjects.append(name)
        labels.append((facs_level(arr["au"][:, cols]) >= view.min_level).astype(np.float64))
        fg = arr["depth"] < 65535
        stats["rgb"].append(arr["rgb"].reshape(len(fg), 3, -1).mean(-1) / 255)
        stats["depth"].append(np.array([arr["depth"][i][fg[i]].mean() / 65535 for i in range(len(fg))]))
        stats["thermal"].append(np.array([arr["thermal"][i][fg[i]].mean() / 65535 for i in range(len(fg))]))
    lines = [f"SynthAU view {view.name}: {view.description}",
             f"  generator {key['generator']}, seed {key['seed']}, {key['image_size']}px, "
             f"{len(subjects)}/{key['subjects']} subjects x {key['sequences']} videos x {key['frames']} frames"]
    if bad:
        lines += ["  CORRUPT: " + b for b in bad]
    if not labels:
        return "\n".join(lines)
    y = np.concatenate(labels)
    lines.append(f"  frames: {len(y)}; occurrence threshold: FACS level >= {view.min_level}")
    lines.append("  occurrence rate per AU:")
    lines.append("    " + "  ".join(f"AU{a}:{r:.2f}" for a, r in zip(view.aus, y.mean(0))))
    co = (y.T @ y) / len(y)
    pairs = sorted(((co[i, j], view.aus[i], view.aus[j]) for i in range(len(cols)) for j in range(i + 1, len(cols))),
                   reverse=True)[:top]
    lines.append("  most frequent co-occurring pairs (fraction of frames):")
    lines.append("    " + "  ".join(f"{a}+{b}:{c:.2f}" for c, a, b in pairs))
    rgb = np.concatenate(stats["rgb"])
    lines.append(f"  rgb mean per channel: {rgb.mean(0).round(3).tolist()}")
    for m in ("depth", "thermal"):
        v = np.concatenate(stats[m])
        lines.append(f"  {m} face mean (normalised): {v.mean():.3f} +- {v.std():.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not folder.is_dir():
        raise SystemExit(f"data info: {folder} is not a folder")
    targets = [folder] if (folder / "manifest.json").is_file() else sorted(p.parent for p in folder.glob("*/manifest.json"))
    if not targets:
        raise SystemExit(f"data info: no manifest.json in {folder} or its sub-folders")
    for t in targets:
        print(describe(t, args.top))
    return 0
