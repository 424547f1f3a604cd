"""``au-lib displace VIDEO | IMG1 IMG2 --tcae FILE [--out PNG]``: TCAE's AU and pose displacements between
frames of any clip, drawn as the TCAE chapter draws them (source, target, AU-changed, pose-changed, AU
displacement, pose displacement; one row per pair).

Pairs: ``--pair S:T`` (repeatable, 0-based frame indices) or ``--pairs K`` pairs sampled with a gap of
``--gap`` frames, evenly over the video (seeded by ``--seed``); two images make one pair. Faces are
detected and aligned at the TCAE's image size, by the rule of its training data (``--align auto``: the
template fit of the Pexels frames for a TCAE trained on ``video``, SynthAU's eye-line crop otherwise).

Examples::

    au-lib displace clip.mp4 --tcae runs/tcae/last.pt --out pairs.png --pairs 6 --gap 8
    au-lib displace a.jpg b.jpg --tcae runs/tcae/last.pt --out ab.png
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="a video, or two images (source, target)")
    parser.add_argument("--tcae", required=True, help="TCAE checkpoint (au-lib train-tcae's last.pt)")
    parser.add_argument("--out", default=None, help="figure to write (PNG; default: the first input's name + .displace.png)")
    parser.add_argument("--pairs", type=int, default=6, help="pairs to sample from a video (default 6)")
    parser.add_argument("--gap", type=int, default=8, help="frames between source and target when sampling")
    parser.add_argument("--pair", action="append", default=[], metavar="S:T", help="a chosen frame pair (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sampling")
    parser.add_argument("--align", choices=("auto", "eye-mouth", "template"), default="auto",
                        help="face alignment (default: by the TCAE's training data)")


def _parse_pairs(texts: list[str]) -> list[tuple[int, int]]:
    out = []
    for t in texts:
        try:
            s, d = (int(v) for v in t.split(":"))
        except ValueError:
            raise ValueError(f"--pair {t!r}: expected S:T with two frame indices, e.g. 10:18") from None
        if s < 0 or d < 0:
            raise ValueError(f"--pair {t!r}: frame indices start at 0")
        out.append((s, d))
    return out


def sample_pairs(n_frames: int, k: int, gap: int, seed: int = 0) -> list[tuple[int, int]]:
    """``k`` pairs ``(s, s + gap)`` with sources spread evenly over ``n_frames`` (jittered by ``seed``)."""
    import numpy as np

    if n_frames <= gap:
        raise ValueError(f"the video has {n_frames} frames: too short for pairs {gap} frames apart (lower --gap)")
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, n_frames - gap, k + 1)
    src = sorted({int(rng.integers(int(a), max(int(a) + 1, int(b)))) for a, b in zip(edges[:-1], edges[1:])})
    return [(s, s + gap) for s in src]


def run(args: argparse.Namespace) -> int:
    import io
    from pathlib import Path

    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from au_lib.data.media import open_media
    from au_lib.detect.run import aligned_frames
    from au_lib.models.tcae import load_tcae
    from au_lib.provenance import atomic_write_bytes, choose_device
    from au_lib.viz.tcae import plot_transforms, predict_pairs

    if len(args.inputs) not in (1, 2):
        raise ValueError(f"give one video or two images, got {len(args.inputs)} paths")
    medias = [open_media(p) for p in args.inputs]  # errors name the path
    ckpt = Path(args.tcae)
    if not ckpt.is_file():
        raise FileNotFoundError(f"TCAE checkpoint not found: {ckpt}")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{ckpt}: not a readable TCAE checkpoint ({type(exc).__name__})") from None
    model = load_tcae(state).to(choose_device(args.device))
    size = int(model.cfg.image_size)
    align = args.align if args.align != "auto" else ("template" if state.get("data") == "video" else "eye-mouth")
    if len(medias) == 2:
        crops = [aligned_frames(m.path, [0], size, align).get(0) for m in medias]
        pairs, labels = [(0, 1)], [f"{medias[0].path.name}->{medias[1].path.name}"]
        missing = [str(m.path) for m, c in zip(medias, crops) if c is None]
        if missing:
            raise ValueError(f"no face found in {', '.join(missing)}")
        by_frame = {0: crops[0], 1: crops[1]}
    else:
        m = medias[0]
        n = m.frame_count_hint or sum(1 for _ in m)
        pairs = _parse_pairs(args.pair) or sample_pairs(n, args.pairs, args.gap, args.seed)
        by_frame = aligned_frames(m.path, sorted({f for p in pairs for f in p}), size, align)
        kept = [(s, t) for s, t in pairs if by_frame.get(s) is not None and by_frame.get(t) is not None]
        if not kept:
            raise ValueError(f"{m.path}: no pair with a face in both frames among {pairs}")
        if len(kept) < len(pairs):
            print(f"skipped {len(pairs) - len(kept)} pair(s) without a face in both frames (or past the end)")
        pairs, labels = kept, [f"{s}->{t}" for s, t in kept]

    def tensor(i: int) -> torch.Tensor:
        return torch.tensor(by_frame[i]).permute(2, 0, 1).float() / 255.0

    batch = {"source": torch.stack([tensor(s) for s, _ in pairs]), "target": torch.stack([tensor(t) for _, t in pairs])}
    fig = plot_transforms(batch, predict_pairs(model, batch), n=len(pairs), ground_truth=False, labels=labels)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    out = Path(args.out) if args.out else medias[0].path.parent / f"{medias[0].path.name}.displace.png"
    atomic_write_bytes(out, buf.getvalue())
    print(f"{len(pairs)} pair(s), {size}px, {align} alignment -> {out}")
    return 0
