"""Turn a licensed dataset into aligned face crops plus an index table; resumable and parallel.

A dataset module (``bp4d``, ``bp4dplus``, ``disfa``) scans its raw folder into
:class:`SequenceJob` s (one per subject x task/video, with the labelled frames and a frame source);
:func:`prepare` aligns every labelled frame with :class:`~au_lib.data.align.FaceAligner` and writes::

    <out>/prepare.json         dataset, AU lists, aligner settings, normalisations, counts
    <out>/index.csv            one row per aligned frame: subject, sequence, frame, path, method,
                               au_<n> (1/0/-1; -1 = unknown, the mask), int_<n> (0-5, -1 unknown),
                               unknown_aus (";"-joined AUs whose label is unknown), depth/thermal paths
    <out>/report.json|.txt     what failed or was skipped, per kind, and every item
    <out>/failures.csv         one row per failed or skipped item
    <out>/crops/<subject>/<sequence>/<frame:05d>.jpg  (and _depth.png / _thermal.png)
    <out>/parts/<subject>_<sequence>.json             per-sequence results (resumption unit)

**Resumption**: a sequence is finished when its part file exists; a rerun verifies it (every crop
file it lists exists with the recorded byte size; ``verify="full"`` also decodes them) and skips
it, redoing only unfinished or damaged sequences. All files are written atomically.
**Failures** are never silent: ``no_face``, ``unreadable_frame``, ``label_without_frame``,
``modality_missing`` and (informational) ``frame_without_label`` are counted and listed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from au_lib.provenance import atomic_write_bytes, atomic_write_json

from .align import FaceAligner, NoFaceError, warp_to_crop
from .sources import MissingFrame

FORMAT_VERSION = 1
FAILURE_KINDS = ("no_face", "unreadable_frame", "label_without_frame", "modality_missing")
INFO_KINDS = ("frame_without_label",)


@dataclass
class Issue:
    """One failed or skipped item."""

    subject: str
    sequence: str
    frame: int
    kind: str
    detail: str


@dataclass
class SequenceJob:
    """One sequence to prepare.

    ``frames`` (1-based label frame numbers) with ``au`` (N, A) occurrence and ``intensity`` (N, B)
    rows; ``source`` has ``iter_frames``; ``modalities`` maps a name ("depth", "thermal") to a reader
    with ``read(frame) -> H x W float32 or None``, ``to_rgb(subject) -> 3x3`` (its pixels to RGB
    pixels) and ``normalise(crop) -> [0, 1]`` (see :mod:`au_lib.data.bp4dplus`).
    """

    subject: str
    sequence: str
    frames: list[int]
    au: np.ndarray
    intensity: np.ndarray
    source: Any
    modalities: dict[str, Any] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.subject}_{self.sequence}"


def _encode_rgb(crop: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(crop).save(buf, format="PNG")
    else:
        Image.fromarray(crop).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _encode_u16(x01: np.ndarray) -> bytes:
    """Encode a [0, 1] float map as a 16-bit grey PNG."""
    from PIL import Image

    buf = io.BytesIO()
    arr = np.round(np.clip(x01, 0, 1) * 65535).astype(np.uint16)
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write_crop(path: Path, data: bytes) -> None:
    """Atomic (temp file + rename) but without fsync: crops are many and cheap to redo; a crop lost
    in a crash fails the size check of its sequence's part file (which *is* fsynced) on resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _verify_part(part: dict, out: Path, full: bool) -> bool:
    from PIL import Image

    for row in part["rows"]:
        for key in ("path", "depth_path", "thermal_path"):
            rel = row.get(key)
            if not rel:
                continue
            p = out / rel
            if not p.is_file() or p.stat().st_size != row["bytes"].get(key):
                return False
            if full:
                try:
                    with Image.open(p) as im:
                        im.load()
                except OSError:
                    return False
    return True


def process_sequence(job: SequenceJob, out: str, aligner: FaceAligner, *, fmt: str = "jpg",
                     track_gap: int = 0, verify: str = "size", tick=None) -> dict:
    """Align the labelled frames of one sequence; write crops and the part file. Returns the part.

    ``tick(n)`` (optional; a callable or a queue's ``put``) is told every few frames how many more
    frames were handled, for the progress bar.
    """
    out_p = Path(out)
    tick = tick or (lambda n: None)
    part_path = out_p / "parts" / f"{job.key}.json"
    if part_path.is_file():
        try:
            part = json.loads(part_path.read_text())
            if part.get("format") == FORMAT_VERSION and _verify_part(part, out_p, verify == "full"):
                part["reused"] = True
                tick(len(job.frames))
                return part
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # damaged part file: redo the sequence
    rows: list[dict] = []
    issues = [asdict(i) for i in job.issues]
    label_of = {f: i for i, f in enumerate(job.frames)}
    prev_box, prev_frame = None, -10**9
    crop_dir = Path("crops") / job.subject / job.sequence
    done = 0
    for n_seen, (frame, img) in enumerate(job.source.iter_frames(job.frames), start=1):
        if n_seen - done >= 25:
            tick(n_seen - done)
            done = n_seen
        i = label_of[frame]
        if isinstance(img, Exception):
            kind = "label_without_frame" if isinstance(img, MissingFrame) else "unreadable_frame"
            issues.append(asdict(Issue(job.subject, job.sequence, frame, kind, str(img))))
            continue
        try:
            fallback = prev_box if frame - prev_frame <= track_gap else None
            face = aligner.align(img, name=f"{job.key} frame {frame}", previous_box=fallback)
        except NoFaceError as exc:
            issues.append(asdict(Issue(job.subject, job.sequence, frame, "no_face", str(exc))))
            continue
        if face.method == "detected":
            prev_box, prev_frame = face.box, frame
        rel = crop_dir / f"{frame:05d}.{fmt}"
        data = _encode_rgb(face.crop, fmt)
        _write_crop(out_p / rel, data)
        row = {"subject": job.subject, "sequence": job.sequence, "frame": int(frame), "path": str(rel),
               "method": face.method, "score": None if np.isnan(face.score) else round(face.score, 3),
               "roll": round(face.roll_deg, 2), "au": job.au[i].tolist(), "intensity": job.intensity[i].tolist(),
               "bytes": {"path": len(data)}}
        for name, reader in job.modalities.items():
            try:
                raw = reader.read(frame)
            except (OSError, ValueError) as exc:
                raw, why = None, f"{type(exc).__name__}: {exc}"
            else:
                why = "no data for this frame"
            if raw is None:
                issues.append(asdict(Issue(job.subject, job.sequence, frame, "modality_missing", f"{name}: {why}")))
                continue
            # modality pixels -> RGB pixels (reader.to_rgb: identity when registered) -> crop
            crop = warp_to_crop(raw, face.matrix @ reader.to_rgb(job.subject), aligner.size, fill=np.nan)
            mrel = crop_dir / f"{frame:05d}_{name}.png"
            mdata = _encode_u16(np.nan_to_num(reader.normalise(crop), nan=0.0))
            _write_crop(out_p / mrel, mdata)
            row[f"{name}_path"] = str(mrel)
            row["bytes"][f"{name}_path"] = len(mdata)
        rows.append(row)
    count = getattr(job.source, "decoded_count", None)
    if count:
        labelled = set(job.frames)
        issues += [asdict(Issue(job.subject, job.sequence, f, "frame_without_label",
                                "video frame (label k = decoded k-1) has no label line"))
                   for f in range(1, count + 1) if f not in labelled]
    tick(len(job.frames) - done)
    part = {"format": FORMAT_VERSION, "subject": job.subject, "sequence": job.sequence,
            "n_labelled": len(job.frames), "rows": rows, "issues": issues}
    atomic_write_json(part_path, part)
    part["reused"] = False
    return part


def _settings_match(old: dict, new: dict) -> list[str]:
    keys = ("dataset", "aus", "intensity_aus", "aligner", "format", "options", "track_gap")
    return [k for k in keys if old.get(k) != new.get(k)]


def prepare(dataset: str, jobs: Sequence[SequenceJob], out: str | Path, *, aus: Sequence[int],
            intensity_aus: Sequence[int], aligner: FaceAligner | None = None, workers: int = 1,
            fmt: str = "jpg", progress: bool = True, verify: str = "size", track_gap: int = 0,
            options: dict | None = None,
            extra_issues: Sequence[Issue] = (), log: Callable[[str], None] = print) -> dict:
    """Prepare ``jobs`` into ``out`` (see the module docstring); returns the summary dict.

    Args:
        workers: processes (1 = in this process).
        fmt: ``jpg`` (quality 95) or ``png`` for RGB crops.
        verify: ``size`` (cheap) or ``full`` (decode every crop) for finished sequences.
        track_gap: when the detector misses a frame, reuse the face box of a detected frame at most
            this many frames earlier (0: off; such frames are marked ``method=tracked``).
        options: dataset options recorded in prepare.json (camera, threshold, ...); a rerun into the
            same folder with different settings is refused.
    Raises:
        ValueError: ``out`` holds data prepared with other settings.
    """
    from tqdm.auto import tqdm

    if fmt not in ("jpg", "png"):
        raise ValueError(f"--format must be jpg or png, got {fmt!r}")
    aligner = aligner or FaceAligner()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "dataset": dataset, "aus": list(aus),
            "intensity_aus": list(intensity_aus), "aligner": aligner.settings(), "format": fmt,
            "options": options or {}, "track_gap": track_gap}
    meta_path = out / "prepare.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        diff = _settings_match(old, meta)
        if diff:
            raise ValueError(f"{out} was prepared with different settings ({', '.join(diff)}); "
                             f"use another --out or delete {out}")
    atomic_write_json(meta_path, {**meta, "complete": False})
    total = sum(len(j.frames) for j in jobs)
    bar = tqdm(total=total, desc=f"prepare {dataset}", unit="frame",
               disable=not progress or bool(os.environ.get("CI")))
    parts: list[dict] = []
    kw = dict(fmt=fmt, verify=verify, track_gap=track_gap)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            parts.append(process_sequence(job, str(out), aligner, tick=bar.update, **kw))
    else:
        import multiprocessing as mp
        import queue as queue_mod

        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            ticks = manager.Queue()
            pending = {pool.submit(process_sequence, job, str(out), aligner, tick=ticks.put, **kw) for job in jobs}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        bar.update(ticks.get_nowait())
                    except queue_mod.Empty:
                        break
                parts += [f.result() for f in finished]
    bar.close()
    return _finish(out, meta, parts, list(extra_issues), aus, intensity_aus, log)


def _finish(out: Path, meta: dict, parts: list[dict], extra: list[Issue], aus, intensity_aus, log) -> dict:
    parts = sorted(parts, key=lambda p: (p["subject"], p["sequence"]))
    header = ["subject", "sequence", "frame", "path", "method", "score", "roll"]
    header += [f"au_{a}" for a in aus] + [f"int_{a}" for a in intensity_aus] + ["unknown_aus"]
    mods = sorted({k[:-5] for p in parts for r in p["rows"] for k in r if k.endswith("_path") and k != "path"})
    header += [f"{m}_path" for m in mods]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    n_rows = 0
    for p in parts:
        for r in sorted(p["rows"], key=lambda r: r["frame"]):
            au = [int(v) for v in r["au"]]
            it = [int(v) for v in r["intensity"]]
            unknown = ";".join(str(a) for a, v in zip(aus, au) if v < 0)
            w.writerow([r["subject"], r["sequence"], r["frame"], r["path"], r["method"],
                        "" if r["score"] is None else r["score"], r["roll"], *au, *it, unknown,
                        *[r.get(f"{m}_path", "") for m in mods]])
            n_rows += 1
    atomic_write_bytes(out / "index.csv", buf.getvalue().encode())
    issues = [asdict(i) for i in extra] + [i for p in parts for i in p["issues"]]
    counts = Counter(i["kind"] for i in issues)
    n_labelled = sum(p["n_labelled"] for p in parts)
    summary = {"sequences": len(parts), "reused_sequences": sum(bool(p.get("reused")) for p in parts),
               "labelled_frames": n_labelled, "aligned_frames": n_rows,
               "tracked_frames": sum(r["method"] == "tracked" for p in parts for r in p["rows"]),
               "failures": {k: counts.get(k, 0) for k in FAILURE_KINDS},
               "skipped": {k: counts.get(k, 0) for k in INFO_KINDS}}
    atomic_write_json(out / "report.json", {"summary": summary, "issues": issues})
    fbuf = io.StringIO()
    fw = csv.writer(fbuf, lineterminator="\n")
    fw.writerow(["subject", "sequence", "frame", "kind", "detail"])
    for i in issues:
        fw.writerow([i["subject"], i["sequence"], i["frame"], i["kind"], i["detail"]])
    atomic_write_bytes(out / "failures.csv", fbuf.getvalue().encode())
    text = report_text(meta["dataset"], summary, issues)
    atomic_write_bytes(out / "report.txt", text.encode())
    atomic_write_json(out / "prepare.json", {**meta, "complete": True, "summary": summary})
    log(text.rstrip())
    return summary


def report_text(dataset: str, summary: dict, issues: list[dict], max_items: int = 20) -> str:
    """A human-readable report: counts per kind and the first ``max_items`` issues."""
    lines = [f"prepared {dataset}: {summary['aligned_frames']} of {summary['labelled_frames']} labelled frames "
             f"aligned in {summary['sequences']} sequences ({summary['reused_sequences']} reused, "
             f"{summary['tracked_frames']} frames aligned from the previous frame's face box)"]
    for k, n in {**summary["failures"], **summary["skipped"]}.items():
        lines.append(f"  {k:20s} {n}")
    bad = [i for i in issues if i["kind"] in FAILURE_KINDS]
    for i in bad[:max_items]:
        lines.append(f"  - {i['subject']}/{i['sequence']} frame {i['frame']}: {i['kind']}: {i['detail']}")
    if len(bad) > max_items:
        lines.append(f"  ... {len(bad) - max_items} more in failures.csv")
    return "\n".join(lines) + "\n"
