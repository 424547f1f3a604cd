"""Reading the AU protocol's results: the papers' table, the stored test-fold predictions, per-AU
difficulty and the frames a method gets wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from au_lib.train.finetune import FrameTable


def load_predictions(result: dict) -> dict[str, np.ndarray]:
    """The test-fold predictions stored beside a result file (``rows``, ``scores``, ``fold``, ``seed``)."""
    path = Path(result["path"]).with_suffix(".preds.npz")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def results_table(results: dict[str, dict], which: str = "honest", percent: bool = True):
    """A pandas DataFrame in the papers' layout: one row per method, one column per AU, then Avg."""
    import pandas as pd

    rows = {}
    for name, res in results.items():
        met = res["metrics"]
        block = met.get(which)
        if block is None:
            continue
        scale = 100.0 if percent else 1.0
        row = {f"AU{a}": (np.nan if v is None else v * scale) for a, v in zip(met["aus"], block["per_au"])}
        row["Avg"] = block["mean"] * scale
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def au_difficulty(table: FrameTable, result: dict, which: str = "honest"):
    """Per-AU F1 beside the properties that make an AU hard, as a pandas DataFrame (one row per AU).

    Columns: ``f1`` (%), ``occurrence`` (fraction of known frames where present), ``intensity``
    (mean FACS intensity when present; NaN if the dataset has none), ``evidence`` (how much of the
    face the AU visibly changes, and how strongly: the mean absolute pixel difference, in 1/255
    units, between a subject's average frame with and without the AU, minus the same statistic with
    the AU's labels shuffled within the subject, the noise floor of small averages), ``partner`` and
    ``partner_cooc`` (the AU most often present with it and ``P(partner | AU)``), ``region``.
    """
    import pandas as pd

    from au_lib.facs import FACS
    from au_lib.metrics import occurrence_rates

    lab = table.au.numpy()
    aus = table.aus
    met = result["metrics"][which]
    occ = occurrence_rates(lab)
    rows = []
    subjects = list(dict.fromkeys(table.subject.tolist()))
    x = table.x[:, :3]
    for i, a in enumerate(aus):
        pos = lab[:, i] == 1
        inten = float("nan")
        if table.au_intensity is not None and pos.any():
            v = table.au_intensity[pos, i].numpy()
            v = v[v >= 0]
            inten = float(v.mean()) if v.size else float("nan")
        diffs = []
        rng = np.random.default_rng(i)
        for s in subjects:
            rows_s = np.flatnonzero((table.subject == s) & (lab[:, i] >= 0))
            p = lab[rows_s, i] == 1
            if 0 < p.sum() < len(p):
                gap = lambda q: float((x[rows_s[q]].mean(0) - x[rows_s[~q]].mean(0)).abs().mean()) * 255  # noqa: E731
                diffs.append(gap(p) - gap(rng.permutation(p)))
        co = [((lab[:, j] == 1) & pos).sum() / max(1, pos.sum()) if j != i else -1 for j in range(len(aus))]
        j = int(np.argmax(co))
        rows.append({"AU": f"AU{a}", "f1": 100 * (met["per_au"][i] if met["per_au"][i] is not None else np.nan),
                     "occurrence": float(occ[i]), "intensity": inten,
                     "evidence": float(np.mean(diffs)) if diffs else float("nan"),
                     "partner": f"AU{aus[j]}", "partner_cooc": float(co[j]),
                     "region": FACS[a].region if a in FACS else "?"})
    return pd.DataFrame(rows).set_index("AU")


def error_examples(table: FrameTable, result: dict, au: int, kind: str = "fp", n: int = 4,
                   seed: int | None = None) -> list[int]:
    """Row indices of ``table`` that the stored test predictions got wrong for AU ``au``.

    ``kind`` ``"fp"`` (predicted present, labelled absent) or ``"fn"``; uses each fold's validation
    thresholds; the most confident mistakes first.
    """
    if kind not in ("fp", "fn"):
        raise ValueError(f"kind must be 'fp' or 'fn', got {kind!r}")
    if au not in table.aus:
        raise KeyError(f"AU{au} is not among this dataset's AUs {table.aus}")
    i = table.aus.index(au)
    preds = load_predictions(result)
    runs = result["metrics"]["runs"]
    s0 = runs[0]["seed"] if seed is None else seed
    thr = {(r["seed"], r["fold"]): r["thresholds"][i] for r in runs}
    keep = preds["seed"] == s0
    rows, sc, fold = preds["rows"][keep], preds["scores"][keep, i], preds["fold"][keep]
    t = np.array([thr[(s0, int(f))] for f in fold])
    y = table.au[rows, i].numpy()
    if kind == "fp":
        wrong = (sc >= t) & (y == 0)
        order = np.argsort(-(sc - t)[wrong])
    else:
        wrong = (sc < t) & (y == 1)
        order = np.argsort((sc - t)[wrong])
    return rows[wrong][order][:n].tolist()


def paired_difference(a: dict, b: dict, which: str = "honest", confidence: float = 0.95) -> dict:
    """``a`` minus ``b``: two protocol results over the same folds (and seeds), compared run by run.

    Returns the per-run differences of mean F1, their mean, a Student-t ``confidence`` interval and
    a ``verdict``: ``"a better"`` when the interval lies above 0, ``"b better"`` when below, else
    ``"inconclusive"``. F1 values in [0, 1]. Pairing by fold removes the fold-to-fold spread that two
    methods share (an unusual test subject lowers both).

    Raises:
        ValueError: when the results do not have the same number (>= 2) of runs.
    """
    from scipy import stats

    x = np.asarray(a["metrics"][which]["per_fold_mean"], dtype=float)
    y = np.asarray(b["metrics"][which]["per_fold_mean"], dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"paired_difference: need the same runs (>= 2) in both results, got {x.size} and {y.size}")
    d = x - y
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * float(d.std(ddof=1) / np.sqrt(d.size))
    lo, hi = float(d.mean()) - half, float(d.mean()) + half
    verdict = "a better" if lo > 0 else "b better" if hi < 0 else "inconclusive"
    return {"difference": float(d.mean()), "interval": (lo, hi), "per_fold": d.tolist(),
            "confidence": confidence, "verdict": verdict}


def all_present_f1(table: FrameTable, result: dict) -> float:
    """Mean F1 in [0, 1] of predicting every AU present in every test frame of ``result``'s folds
    (averaged over folds as the protocol averages a method), read from its saved predictions."""
    from au_lib.metrics import f1_per_au

    preds = load_predictions(result)
    folds = np.unique(preds["fold"])
    return float(np.mean([f1_per_au(table.au[preds["rows"][preds["fold"] == k]].numpy(),
                                    np.ones((int((preds["fold"] == k).sum()), len(table.aus)))).mean
                          for k in folds]))
