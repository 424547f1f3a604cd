"""``au-lib detect PATH --detector FILE``: Action Units in every frame of an image, a folder of images or
a video, with a detector file (written by the training commands' ``--save-detector``, or by
``au_lib.experiments.learnability.learnability_detector``).

Each frame: face detection (dlib HOG), 68 landmarks, the detector's own alignment (for SynthAU-trained
detectors the crop its training faces were rendered with), the network on batches of frames. Frames
are streamed: memory does not grow with the video's length.

CSV columns (one row per decoded frame; names after OpenFace's ``AUxx_c``):

  frame       0-based decoded frame index (folders: position in natural name order)
  timestamp   seconds from the start of the video stream (container timestamps; NaN for images)
  file        image file name (empty for videos)
  face        1 if a face was found, else 0 (then the columns below are NaN)
  confidence  the face detector's score (dlib HOG; larger is surer)
  x, y, w, h  face box in source pixels (left, top, width, height)
  roll        in-plane rotation of the eye line, degrees (removed by the alignment)
  AUxx_p      probability that AU xx is present, in [0, 1]
  AUxx_c      decision: 1 if AUxx_p >= the AU's threshold (chosen on validation data), else 0

Examples::

    au-lib detect clip.mp4 --detector detector.pt --out clip.csv --plot clip.png --sheet sheet.png
    au-lib detect photos/ --detector detector.pt --device cpu
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an image, a folder of images, or a video (any format FFmpeg reads)")
    parser.add_argument("--detector", required=True, help="detector file (.pt)")
    parser.add_argument("--out", default=None, help="CSV to write (default: PATH with suffix .au.csv)")
    parser.add_argument("--plot", default=None, help="also write a timeline of the AU probabilities (PNG)")
    parser.add_argument("--sheet", default=None, help="also write a contact sheet of aligned faces (PNG)")
    parser.add_argument("--sheet-frames", type=int, default=12, help="faces on the contact sheet (default 12)")
    parser.add_argument("--batch", type=int, default=32, help="frames per network batch (default 32)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (default: all)")


def _save_figure(fig, path) -> None:
    import io

    import matplotlib.pyplot as plt

    from au_lib.provenance import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from au_lib.detect import detect_run, load_detector, write_table
    from au_lib.data.media import open_media
    from au_lib.provenance import choose_device

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    open_media(args.path)  # a bad input is reported before the detector is loaded
    det = load_detector(args.detector, device=choose_device(args.device))
    res = detect_run(args.path, det, batch=args.batch, progress=not args.no_progress,
                     keep_crops=args.sheet_frames if args.sheet else 0, max_frames=args.max_frames)
    src = Path(args.path)
    out = Path(args.out) if args.out else src.parent / f"{src.name}.au.csv"
    write_table(res.table, out)
    t = res.table
    print(f"{src}: {len(t)} frames, face in {int(t['face'].sum())}; {len(det.aus)} AUs -> {out}")
    if args.plot:
        from au_lib.viz.detect import plot_timeline

        _save_figure(plot_timeline(t, thresholds=dict(zip(det.aus, det.thresholds)),
                                   title=f"{src.name} · {det.training.get('data', '')}"), args.plot)
        print(f"timeline -> {args.plot}")
    if args.sheet:
        from au_lib.viz.detect import contact_sheet

        _save_figure(contact_sheet(res, n=args.sheet_frames), args.sheet)
        print(f"contact sheet -> {args.sheet}")
    return 0
