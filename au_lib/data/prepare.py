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
file it lists exists with the recorded byte size; ``verify="full"`` also decodes them; its labels
are those of the current label files, compared by content) and skips it, redoing only unfinished,
damaged or relabelled sequences. ``index.csv`` always covers every valid part in the folder, so a
rerun with ``--subjects X`` adds X to the index instead of replacing it. All files are written
atomically; temporary files of an interrupted run are removed.
**Failures** are never silent, and one bad frame never stops the run: ``no_face``,
``unreadable_frame`` (corrupt, empty or oversized image, broken archive, any error while aligning
it), ``label_without_frame`` (also gaps in a video), ``modality_missing`` (no depth/thermal data),
``unreadable_modality`` (a depth/thermal file that cannot be used), ``part_damaged`` (a finished
sequence of an earlier run whose files are gone) and the informational ``frame_without_label`` and
``video_gap`` are counted and listed with the file and the reason.
**Processes**: pool workers (``workers > 1``) die with the process that started them.
"""

from __future__ import annotations

import csv
import hashlib
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

FORMAT_VERSION = 2  # 2: part files carry the content key of their labels
FAILURE_KINDS = ("no_face", "unreadable_frame", "label_without_frame", "modality_missing",
                 "unreadable_modality", "part_damaged")
INFO_KINDS = ("frame_without_label", "video_gap")


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

    def labels_key(self) -> str:
        """Content hash of what this sequence's rows will hold: frames, AU and intensity labels, modalities."""
        h = hashlib.sha256()
        h.update(np.asarray(self.frames, dtype=np.int64).tobytes())
        for a in (self.au, self.intensity):
            arr = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
        h.update(",".join(sorted(self.modalities)).encode())
        return h.hexdigest()[:16]


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
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a kill must not leave a .tmp behind
        raise


def _remove_temporaries(folder: Path) -> int:
    """Delete the ``.<name>.tmp`` files an interrupted run left in ``folder`` (not recursive)."""
    n = 0
    if folder.is_dir():
        for t in folder.glob(".*.tmp"):
            t.unlink(missing_ok=True)
            n += 1
    return n


def _load_part(path: Path) -> dict | None:
    """A part file's content, or None if it is unreadable or of another format."""
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(part, dict) or part.get("format") != FORMAT_VERSION or not isinstance(part.get("rows"), list):
        return None
    return part


def _verify_part(part: dict, out: Path, full: bool) -> bool:
    from PIL import Image

    for row in part["rows"]:
        for key in ("path", "depth_path", "thermal_path"):
            rel = row.get(key)
            if not rel:
                continue
            p = out / rel
            try:
                if not p.is_file() or p.stat().st_size != row["bytes"].get(key):
                    return False
            except (OSError, KeyError, TypeError, AttributeError):
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
    labels_key = job.labels_key()
    redo_reason = None
    if part_path.is_file():
        part = _load_part(part_path)
        if part is None:
            redo_reason = "part file unreadable or of an older format"
        elif part.get("labels_key") != labels_key:
            redo_reason = "labels changed since it was prepared"
        elif not _verify_part(part, out_p, verify == "full"):
            redo_reason = "crop files missing or damaged"
        else:
            part["reused"] = True
            tick(len(job.frames))
            return part
    rows: list[dict] = []
    issues = [asdict(i) for i in job.issues]
    label_of = {f: i for i, f in enumerate(job.frames)}
    prev_box, prev_frame = None, -10**9
    crop_dir = Path("crops") / job.subject / job.sequence
    _remove_temporaries(out_p / crop_dir)

    def issue(frame: int, kind: str, detail: str) -> None:
        issues.append(asdict(Issue(job.subject, job.sequence, int(frame), kind, detail)))

    done = 0
    seen: set[int] = set()
    frames_iter = iter(job.source.iter_frames(job.frames))
    n_seen = 0
    while True:
        try:
            frame, img = next(frames_iter)
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - the source itself broke: its remaining frames fail
            why = f"frame source failed: {type(exc).__name__}: {exc}"
            for f in job.frames:
                if f not in seen:
                    issue(f, "unreadable_frame", why)
            break
        n_seen += 1
        seen.add(frame)
        if n_seen - done >= 25:
            tick(n_seen - done)
            done = n_seen
        i = label_of.get(frame)
        if i is None:  # a custom source yielding frames nobody asked for
            issue(frame, "unreadable_frame", f"{job.key}: the frame source returned frame {frame}, which has no label")
            continue
        if isinstance(img, Exception):
            kind = "label_without_frame" if isinstance(img, MissingFrame) else "unreadable_frame"
            issue(frame, kind, str(img))
            continue
        try:
            fallback = prev_box if frame - prev_frame <= track_gap else None
            face = aligner.align(img, name=f"{job.key} frame {frame}", previous_box=fallback)
        except NoFaceError as exc:
            issue(frame, "no_face", str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a bad frame is a failure row, never the end of the run
            issue(frame, "unreadable_frame", f"{job.key} frame {frame}: cannot align: {type(exc).__name__}: {exc}")
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
                if raw is not None:
                    # modality pixels -> RGB pixels (reader.to_rgb: identity when registered) -> crop
                    crop = warp_to_crop(raw, face.matrix @ reader.to_rgb(job.subject), aligner.size, fill=np.nan)
                    mdata = _encode_u16(np.nan_to_num(reader.normalise(crop), nan=0.0))
            except Exception as exc:  # noqa: BLE001 - a bad depth/thermal file fails this frame's modality only
                issue(frame, "unreadable_modality", f"{name}: {type(exc).__name__}: {exc}")
                continue
            if raw is None:
                issue(frame, "modality_missing", f"{name}: no data for this frame")
                continue
            mrel = crop_dir / f"{frame:05d}_{name}.png"
            _write_crop(out_p / mrel, mdata)
            row[f"{name}_path"] = str(mrel)
            row["bytes"][f"{name}_path"] = len(mdata)
        rows.append(row)
    present = getattr(job.source, "present_frames", None)
    count = getattr(job.source, "decoded_count", None)
    if present is None and count:
        present = set(range(1, count + 1))
    if present:
        labelled = set(job.frames)
        issues += [asdict(Issue(job.subject, job.sequence, f, "frame_without_label",
                                "video frame (label k = video frame k-1, by timestamp) has no label line"))
                   for f in sorted(present - labelled)]
        issues += [asdict(Issue(job.subject, job.sequence, f, "video_gap",
                                f"{getattr(job.source, 'path', '')}: no decodable frame at this timestamp"))
                   for f in getattr(job.source, "gaps", []) if f not in labelled]
    tick(len(job.frames) - done)
    part = {"format": FORMAT_VERSION, "subject": job.subject, "sequence": job.sequence,
            "n_labelled": len(job.frames), "labels_key": labels_key, "rows": rows, "issues": issues}
    atomic_write_json(part_path, part)
    part["reused"] = False
    if redo_reason:
        part["redone"] = redo_reason
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
        ValueError: ``out`` holds data prepared with other settings, is a file, is not writable, or
            writing failed (full disk); bad ``fmt``/``verify``/``workers``/``track_gap``.
    """
    if fmt not in ("jpg", "png"):
        raise ValueError(f"--format must be jpg or png, got {fmt!r}")
    if verify not in ("size", "full"):
        raise ValueError(f"--verify must be size or full, got {verify!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    if isinstance(track_gap, bool) or int(track_gap) != track_gap or track_gap < 0:
        raise ValueError(f"--track-gap must be an integer >= 0, got {track_gap!r}")
    aligner = aligner or FaceAligner()
    out = check_output_folder(out)
    meta = {"format_version": FORMAT_VERSION, "dataset": dataset, "aus": list(aus),
            "intensity_aus": list(intensity_aus), "aligner": aligner.settings(), "format": fmt,
            "options": options or {}, "track_gap": track_gap}
    meta_path = out / "prepare.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: unreadable ({exc}); it records how {out} was prepared: delete "
                             f"{out} or use another --out") from None
        diff = _settings_match(old, meta)
        if diff:
            raise ValueError(f"{out} was prepared with different settings ({', '.join(diff)}); "
                             f"use another --out or delete {out}")
    for folder in (out, out / "parts"):
        _remove_temporaries(folder)
    try:
        return _prepare(dataset, jobs, out, meta, aus, intensity_aus, aligner, workers, fmt, progress, verify,
                        track_gap, list(extra_issues), log)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: one line, no traceback
        raise ValueError(f"{out}: cannot write the prepared data ({type(exc).__name__}: {exc}); rerun the "
                         f"same command once fixed, finished sequences are kept") from None


def check_output_folder(out: str | Path) -> Path:
    """Create ``out`` if needed and make sure it is a writable folder; ValueError naming it otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder is not writable")
    return out


def _die_with_parent() -> None:
    """Pool worker initialiser: end this process when the parent dies (SIGKILL included; Linux)."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    parent = os.environ.get("AU_PREPARE_PARENT")
    if parent and os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


def _prepare(dataset, jobs, out: Path, meta: dict, aus, intensity_aus, aligner, workers, fmt, progress, verify,
             track_gap, extra_issues, log) -> dict:
    from tqdm.auto import tqdm

    meta_path = out / "prepare.json"
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
        from multiprocessing.managers import SyncManager

        ctx = mp.get_context("spawn")
        previous = os.environ.get("AU_PREPARE_PARENT")
        os.environ["AU_PREPARE_PARENT"] = str(os.getpid())  # inherited by the spawned processes
        try:
            manager = SyncManager(ctx=ctx)
            manager.start(initializer=_die_with_parent)
            with manager, ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                              initializer=_die_with_parent) as pool:
                ticks = manager.Queue()
                pending = {pool.submit(process_sequence, job, str(out), aligner, tick=ticks.put, **kw)
                           for job in jobs}
                while pending:
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    while True:
                        try:
                            bar.update(ticks.get_nowait())
                        except queue_mod.Empty:
                            break
                    parts += [f.result() for f in finished]
        finally:
            if previous is None:
                os.environ.pop("AU_PREPARE_PARENT", None)
            else:
                os.environ["AU_PREPARE_PARENT"] = previous
    bar.close()
    return _finish(out, meta, parts, extra_issues, aus, intensity_aus, log)


def _earlier_parts(out: Path, done: set[tuple[str, str]]) -> tuple[list[dict], list[Issue]]:
    """Finished sequences of earlier runs into ``out`` that this run did not touch (``--subjects``):
    valid ones stay in the index; damaged ones are reported (rerun with their subject to redo them)."""
    parts, issues = [], []
    folder = out / "parts"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        part = _load_part(path)
        if part is not None and (part.get("subject"), part.get("sequence")) in done:
            continue
        if part is None or not _verify_part(part, out, False):
            subject, _, sequence = path.stem.partition("_")
            issues.append(Issue(str(part.get("subject", subject)) if part else subject,
                                str(part.get("sequence", sequence)) if part else sequence, 0, "part_damaged",
                                f"{path}: a sequence prepared earlier is unreadable or lost crops; it is left out "
                                f"of index.csv until prepared again (rerun with --subjects for it)"))
            continue
        part["reused"] = True
        part["earlier_run"] = True
        parts.append(part)
    return parts, issues


def _finish(out: Path, meta: dict, parts: list[dict], extra: list[Issue], aus, intensity_aus, log) -> dict:
    earlier, damaged = _earlier_parts(out, {(p["subject"], p["sequence"]) for p in parts})
    extra = list(extra) + damaged
    run_sequences = len(parts)
    parts = sorted(parts + earlier, key=lambda p: (p["subject"], p["sequence"]))
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
    summary = {"sequences": len(parts), "sequences_this_run": run_sequences,
               "earlier_sequences": len(earlier),
               "redone_sequences": {f"{p['subject']}_{p['sequence']}": p["redone"] for p in parts if p.get("redone")},
               "reused_sequences": sum(bool(p.get("reused")) for p in parts),
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
