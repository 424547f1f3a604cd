"""A resumable sweep: pre-train once per run, take checkpoints at several epochs, evaluate each point.

The layer knows nothing about MCM. It is built around two injected callables, so that its behaviour
(resumption, reuse, determinism, corruption handling, sharding) can be tested on tiny stubs:

- ``pretrain_fn(run, work_dir) -> {epoch: Checkpoint}``: train ``run`` once (resuming inside
  ``work_dir`` if it was interrupted) and return a checkpoint for every epoch in ``run.epochs``
  (epoch 0 = the initialisation, i.e. "no pre-training");
- ``evaluate_fn(point, checkpoint, work_dir) -> metrics``: score one checkpoint (a JSON-able dict,
  conventionally with ``mean``, ``per_au``, ``per_fold_mean``, ``std_over_folds``).

:func:`run_sweep` writes one result file per point (``<results_dir>/<point.name>.json`` via
:func:`au_lib.results.save_result`: config, metrics, provenance, checksum). A point whose file exists,
is intact and was made with the same config is reused and its run is not even pre-trained; a corrupt
file is reported and recomputed. Result files never depend on the machine: the config is the run's
pre-training config, the epoch and the evaluation config only.

Spreading a sweep over several processes (one GPU each):

- static: ``shard=(i, n)`` gives process ``i`` the points ``i, i+n, i+2n, ...``;
- dynamic: start the same command several times; each point is claimed with a non-blocking file
  lock (``filelock``), a point held by another process is deferred and picked up (or read) later,
  and a run is pre-trained by one process at a time (blocking lock on the run folder) while the
  others wait and then find its checkpoints finished.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

SWEEP_FORMAT = 1


@dataclass(frozen=True)
class Run:
    """One pre-training run from which several checkpoints are taken.

    name: folder name (unique within a sweep); config: JSON-able, identifies the run (seed included);
    epochs: the checkpoint epochs the sweep needs from it (0 = initial weights), sorted, unique.
    """

    name: str
    config: Mapping
    epochs: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_name(self.name, "run")
        eps = tuple(int(e) for e in self.epochs)
        if not eps or any(e < 0 for e in eps):
            raise ValueError(f"run {self.name!r}: epochs must be a non-empty list of integers >= 0, got {self.epochs}")
        object.__setattr__(self, "epochs", tuple(sorted(set(eps))))


@dataclass(frozen=True)
class Point:
    """One evaluated checkpoint: ``run`` at ``epoch``, scored with ``evaluation`` (a JSON-able dict).

    ``labels`` are free-form coordinates for plotting (e.g. ``{"mask_ratio": 0.5, "modality": "rgb"}``)
    and are stored in the config, so they are part of the key.
    """

    name: str
    run: Run
    epoch: int
    evaluation: Mapping
    labels: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "point")
        if self.epoch not in self.run.epochs:
            raise ValueError(f"point {self.name!r}: epoch {self.epoch} is not among run "
                             f"{self.run.name!r}'s checkpoint epochs {self.run.epochs}")

    def config(self) -> dict:
        """What identifies this point's result (the reuse key is a hash of it)."""
        return {"sweep_format": SWEEP_FORMAT, "run": dict(self.run.config), "epoch": int(self.epoch),
                "evaluation": dict(self.evaluation), "labels": dict(self.labels)}


@dataclass
class Checkpoint:
    """What ``pretrain_fn`` returns per epoch: a path (None for stubs that keep weights elsewhere) and
    statistics of the pre-training at that epoch (e.g. the reconstruction loss), stored with the point."""

    path: Path | None
    stats: dict = field(default_factory=dict)


PretrainFn = Callable[[Run, Path], Mapping[int, Checkpoint]]
EvaluateFn = Callable[[Point, Checkpoint, Path], dict]


@dataclass
class SweepReport:
    """What :func:`run_sweep` did. ``results`` maps point name to the loaded result (all points of the
    shard that are finished, in sweep order)."""

    results: dict[str, dict]
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # corrupt or stale files that were recomputed
    pretrained: list[str] = field(default_factory=list)  # runs whose pretrain_fn was called
    by_others: list[str] = field(default_factory=list)  # finished by another process meanwhile

    def summary(self) -> str:
        return (f"{len(self.results)} points: {len(self.computed)} computed, {len(self.reused)} reused, "
                f"{len(self.by_others)} from other processes; {len(self.recovered)} corrupt/stale files "
                f"recomputed; runs pre-trained: {', '.join(self.pretrained) or 'none'}")


def _check_name(name: str, what: str) -> None:
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise ValueError(f"{what} name {name!r} must be a plain file name (no slashes, not hidden)")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0-based ``i < n``) -> ``(i, n)``; None stays None.

    Raises:
        ValueError: naming the text when it is malformed.
    """
    if text is None or text == "":
        return None
    try:
        i_s, n_s = str(text).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n with integers, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def check_points(points: Sequence[Point]) -> None:
    """Point names unique; a run name always means the same run (config and epochs).

    Raises:
        ValueError: naming the clash.
    """
    names: set[str] = set()
    runs: dict[str, Run] = {}
    for p in points:
        if p.name in names:
            raise ValueError(f"two points are named {p.name!r}")
        names.add(p.name)
        other = runs.setdefault(p.run.name, p.run)
        if other != p.run:
            raise ValueError(f"run name {p.run.name!r} is used for two different runs "
                             f"(config or checkpoint epochs differ)")


def run_work_dir(work_dir: str | os.PathLike, run: Run) -> Path:
    """``work_dir/runs/<run.name>-<config hash>``: a changed run config never resumes an old run."""
    from au_lib.results import config_key

    return Path(work_dir) / "runs" / f"{run.name}-{config_key(dict(run.config))[:8]}"


def result_path(results_dir: str | os.PathLike, point: Point) -> Path:
    return Path(results_dir) / f"{point.name}.json"


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive cross-process lock on ``path`` (``filelock.FileLock``; created if needed). Yields
    True when held, False when ``blocking=False`` and another process holds it."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=-1 if blocking else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _stored(path: Path, config: dict, report: SweepReport | None = None) -> dict | None:
    """The reusable result at ``path`` or None; corrupt/stale files are noted in ``report.recovered``."""
    from au_lib.results import reusable

    if not path.exists():
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hit = reusable(path, config)
        except (UnicodeDecodeError, OSError) as exc:  # load_result only catches JSON errors
            warnings.warn(f"recomputing: {path}: unreadable result file ({exc})", stacklevel=2)
            hit = None
    for w in caught:  # a corrupt file: say so once, clearly, with its name
        warnings.warn(str(w.message), RuntimeWarning, stacklevel=3)
    if hit is None and report is not None:
        report.recovered.append(path.stem)
    return hit


def run_sweep(points: Sequence[Point], results_dir: str | os.PathLike, work_dir: str | os.PathLike,
              pretrain_fn: PretrainFn, evaluate_fn: EvaluateFn, *, profile: str | None = None,
              device=None, shard: tuple[int, int] | None = None, reuse: bool = True,
              progress: bool = True, log: Callable[[str], None] | None = None) -> SweepReport:
    """Compute every point of ``points`` (or of this process's ``shard``) that has no valid result yet.

    Args:
        points: the sweep (see :func:`check_points`).
        results_dir: one small JSON result file per point (may be a committed folder).
        work_dir: checkpoints and intermediate files, ``work_dir/runs/<run.name>/`` per run and
            ``work_dir/eval/<point.name>/`` per point (a cache; safe to delete).
        pretrain_fn, evaluate_fn: see the module docstring. Both must be deterministic given the
            configs for the sweep to be reproducible.
        profile: recorded in the provenance (default: the active profile).
        device: recorded in the provenance (the callables choose their own device).
        shard: ``(i, n)`` static partition of the points; None: all, claimed with file locks.
        reuse: False recomputes every point (files are overwritten atomically).
        progress: a tqdm bar over points (off under ``$CI``).
        log: called with one line per event (default: silent).

    Returns:
        :class:`SweepReport`.
    """
    from au_lib.profiles import current_profile
    from au_lib.provenance import make_provenance, timed
    from au_lib.results import load_result, save_result

    check_points(points)
    say = log or (lambda _msg: None)
    profile = profile or current_profile()
    results_dir, work_dir = Path(results_dir), Path(work_dir)
    mine = [p for k, p in enumerate(points) if shard is None or k % shard[1] == shard[0]]
    report = SweepReport(results={})
    todo: list[Point] = []
    for p in mine:
        hit = _stored(result_path(results_dir, p), p.config(), report) if reuse else None
        if hit is not None:
            report.results[p.name] = hit
            report.reused.append(p.name)
        else:
            todo.append(p)
    say(f"{len(mine)} points, {len(mine) - len(todo)} reusable, {len(todo)} to compute")
    checkpoints: dict[str, Mapping[int, Checkpoint]] = {}
    pretrain_wall: dict[str, float] = {}

    def ensure_run(run: Run) -> Mapping[int, Checkpoint]:
        if run.name not in checkpoints:
            run_dir = run_work_dir(work_dir, run)
            with file_lock(work_dir / "locks" / f"run-{run.name}.lock", blocking=True):
                say(f"pre-training run {run.name} (checkpoints at epochs {list(run.epochs)})")
                with timed() as t:
                    ck = dict(pretrain_fn(run, run_dir))
                missing = [e for e in run.epochs if e not in ck]
                if missing:
                    raise RuntimeError(f"pretrain_fn returned no checkpoint for run {run.name!r} "
                                       f"at epochs {missing}")
            checkpoints[run.name] = ck
            pretrain_wall[run.name] = t["seconds"]
            report.pretrained.append(run.name)
        return checkpoints[run.name]

    def compute(p: Point) -> None:
        path = result_path(results_dir, p)
        ck = ensure_run(p.run)[p.epoch]
        with timed() as t:
            metrics = evaluate_fn(p, ck, work_dir / "eval" / p.name)
        if not isinstance(metrics, dict):
            raise TypeError(f"evaluate_fn returned {type(metrics).__name__} for point {p.name!r}, expected dict")
        prov = make_provenance(profile, t["seconds"] + pretrain_wall.get(p.run.name, 0.0), device)
        extra = {"point": p.name, "run": p.run.name, "checkpoint_stats": ck.stats,
                 "pretrain_wall_s": pretrain_wall.get(p.run.name, 0.0), "eval_wall_s": t["seconds"]}
        save_result(path, p.config(), metrics, prov, extra=extra)
        report.results[p.name] = load_result(path)
        report.computed.append(p.name)
        say(f"{p.name}: mean {metrics.get('mean', float('nan')):.4f}")

    def take_or_compute(p: Point, check: bool) -> None:
        """Use the point's stored result if another process wrote it (and ``check``), else compute it."""
        hit = _stored(result_path(results_dir, p), p.config()) if check else None
        if hit is None:
            compute(p)
            return
        report.results[p.name] = hit
        report.by_others.append(p.name)

    from au_lib.train.engine import progress as progress_bar

    deferred: list[Point] = []
    bar = progress_bar(total=len(todo), desc="sweep points", enabled=progress and bool(todo))
    try:
        for p in todo:
            lock = work_dir / "locks" / f"point-{p.name}.lock"
            with file_lock(lock, blocking=False) as held:
                if not held:
                    deferred.append(p)
                    continue
                # another process may have finished it while we were busy
                take_or_compute(p, check=reuse)
            bar.update(1)
        for p in deferred:  # wait for the other process, then read (or compute if it gave up)
            with file_lock(work_dir / "locks" / f"point-{p.name}.lock", blocking=True):
                take_or_compute(p, check=True)
            bar.update(1)
    finally:
        bar.close()
    report.results = {p.name: report.results[p.name] for p in mine if p.name in report.results}
    return report


def load_sweep(points: Sequence[Point], results_dir: str | os.PathLike) -> dict[str, dict]:
    """The stored, valid results of ``points`` (missing, corrupt or stale ones left out)."""
    out = {}
    for p in points:
        hit = _stored(result_path(results_dir, p), p.config())
        if hit is not None:
            out[p.name] = hit
    return out


__all__ = ["Run", "Point", "Checkpoint", "SweepReport", "run_sweep", "load_sweep", "check_points",
           "parse_shard", "file_lock", "result_path", "run_work_dir", "PretrainFn", "EvaluateFn"]
