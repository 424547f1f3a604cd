"""``au-lib data prepare {bp4d,bp4dplus,disfa} --root RAW --out PREPARED``: aligned crops + index table.

Resumable: rerun the same command after an interruption; finished sequences are verified and
skipped. Failures (no face, unreadable frame, label without frame, ...) are listed in
``<out>/report.txt`` and ``<out>/failures.csv``.
"""

from __future__ import annotations

import argparse
import os

HELP = "align the faces of a licensed dataset (BP4D, BP4D+, DISFA) into crops plus an index table"

DATASETS = ("bp4d", "bp4dplus", "disfa")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=DATASETS, help="which dataset layout to read")
    parser.add_argument("--root", default=None,
                        help="the dataset as distributed (default: $AU_BP4D_ROOT / $AU_BP4DPLUS_ROOT / $AU_DISFA_ROOT)")
    parser.add_argument("--out", required=True, help="output folder for crops, index.csv and the report")
    parser.add_argument("--size", type=int, default=224, help="crop side in pixels (default 224)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="parallel processes (default: CPUs - 1)")
    parser.add_argument("--subjects", nargs="*", default=None,
                        help="only these subjects (e.g. F001 M002); added to what --out already holds")
    parser.add_argument("--tasks", nargs="*", default=None, help="BP4D/BP4D+: only these tasks (e.g. T1 T6)")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N labelled frames per sequence, N >= 1 (a quick try)")
    parser.add_argument("--format", default="jpg", choices=("jpg", "png"), help="RGB crop encoding")
    parser.add_argument("--verify", default="size", choices=("size", "full"),
                        help="how finished sequences are verified on resume (full: decode every crop)")
    parser.add_argument("--camera", default="left", choices=("left", "right"), help="DISFA camera (default left)")
    parser.add_argument("--threshold", type=float, default=2.0,
                        help="DISFA: AU present at intensity >= this, in (0, 5] (default 2)")
    parser.add_argument("--modalities", nargs="*", default=["rgb"], help="BP4D+: rgb depth thermal")
    parser.add_argument("--depth", default="obj", choices=("obj", "images"), help="BP4D+ depth reader")
    parser.add_argument("--thermal-calibration", default=None, help="BP4D+: JSON of thermal->RGB homographies")
    parser.add_argument("--thermal-offset", type=int, default=0, help="BP4D+: thermal frame = RGB frame + offset")
    parser.add_argument("--track-gap", type=int, default=0,
                        help="reuse the last detected face box for up to N frames when detection fails (0: off)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def jobs_for(args: argparse.Namespace):
    """(jobs, aus, intensity_aus, options) for ``args.dataset``."""
    if args.dataset == "bp4d":
        from au_lib.data import bp4d as m

        jobs = m.scan(args.root, subjects=args.subjects, tasks=args.tasks, limit=args.limit)
        return jobs, m.AUS, m.INTENSITY_AUS, {}
    if args.dataset == "disfa":
        from au_lib.data import disfa as m

        jobs = m.scan(args.root, subjects=args.subjects, camera=args.camera, threshold=args.threshold,
                      limit=args.limit)
        return jobs, m.AUS, m.INTENSITY_AUS, {"camera": args.camera, "threshold": args.threshold,
                                              "frame_numbering": "label frame k = video frame k-1 by timestamp"}
    from au_lib.data import bp4dplus as m

    jobs = m.scan(args.root, subjects=args.subjects, tasks=args.tasks or m.CODED_TASKS,
                  modalities=args.modalities, depth=args.depth, thermal_calibration=args.thermal_calibration,
                  thermal_offset=args.thermal_offset, limit=args.limit)
    return jobs, m.ALL_AUS, m.INTENSITY_AUS, {
        "modalities": list(args.modalities), "depth_reader": args.depth, "thermal_offset": args.thermal_offset,
        "normalisation": m.normalisation_record(jobs, args.thermal_calibration)}


def run(args: argparse.Namespace) -> int:
    """Scan, align and write; errors in the input (FileNotFoundError, LabelFormatError, ValueError)
    propagate to the CLI, which prints them and exits with status 2."""
    from au_lib.data.align import FaceAligner
    from au_lib.data.prepare import prepare

    jobs, aus, int_aus, options = jobs_for(args)
    if args.limit:
        options["limit"] = args.limit
    summary = prepare(args.dataset, jobs, args.out, aus=aus, intensity_aus=int_aus,
                      aligner=FaceAligner(args.size), workers=args.workers, fmt=args.format,
                      progress=not args.no_progress, verify=args.verify, track_gap=args.track_gap,
                      options=options)
    print(f"index: {os.path.join(args.out, 'index.csv')}  report: {os.path.join(args.out, 'report.txt')}")
    return 0 if summary["aligned_frames"] > 0 else 1
