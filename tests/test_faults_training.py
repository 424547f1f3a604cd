"""Faults in training, sweeps and caches (issue #16, training side): one test per fault or malformed input.

Each test asserts the outcome a user needs: a resumed run identical to an uninterrupted one, a clear
one-line error naming the file and the problem (exit status 2 from the command line) with nothing
already written lost or changed, or a damaged cache reported and recomputed.

The kill-and-resume tests run the real command line (``python -m au_lib``-equivalent) in a child
process that SIGKILLs *itself* at an exact point: right after (``after``) or in the middle of
(``during``: half the temp file written) the n-th atomic write of a chosen file (see ``RUNNER``).
That puts the kill between a checkpoint and its log line, between two checkpoints, or inside one,
deterministically. One test also kills from outside at an arbitrary moment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from au_lib import commands as opt
from au_lib.cache import DamagedFileError, load_cached_torch, load_torch_file
from au_lib.cli import main
from au_lib.train.engine import JsonlLogger, read_checkpoint, save_checkpoint

HERE = Path(__file__).resolve().parent
TIMING = ("epoch_time_s", "images_per_s", "wall_s")

# --------------------------------------------------------------------------------------------- harness
RUNNER = r'''
import fnmatch, os, signal, sys
from pathlib import Path
sys.path[:0] = [{here!r}, {root!r}]
fault = os.environ.get("AU_TEST_FAULT")  # "after|during:<glob of the file name>:<n>"
if fault:
    import au_lib.provenance as prov
    mode, pattern, nth = fault.split(":")
    real, seen = prov.atomic_write_bytes, [0]
    def faulty(path, data):
        p = Path(path)
        if fnmatch.fnmatch(p.name, pattern):
            seen[0] += 1
            if seen[0] == int(nth):
                if mode == "during":  # the temp file half written, the target not replaced
                    (p.parent / f".{{p.name}}.killed.tmp").write_bytes(data[: len(data) // 2])
                else:
                    real(path, data)
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data)
    prov.atomic_write_bytes = faulty
from au_lib.data import registry
registry.DATASET_MODULES["fakeau"] = "_fake_au"
import torch
torch.set_num_threads(1)
from au_lib.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runner") / "run_cli.py"
    path.write_text(RUNNER.format(here=str(HERE), root=str(HERE.parent)))
    return path


def cli(runner: Path, *argv: str, fault: str | None = None, cache: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``au-lib argv...`` in a child process, optionally with a self-kill ``fault``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CI="1", PYTHONHASHSEED="0")
    env.pop("AU_TEST_FAULT", None)
    if fault:
        env["AU_TEST_FAULT"] = fault
    if cache is not None:
        env["AU_CACHE"] = str(cache)
    return subprocess.run([sys.executable, str(runner), *argv], env=env, capture_output=True, text=True,
                          timeout=timeout)


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def strip(history) -> list[dict]:
    """A history without its wall-clock fields (they differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Bit-identical weights, optimiser state, counters and history (timings aside)."""
    ca, cb = read_checkpoint(a), read_checkpoint(b)
    assert (ca["epoch"], ca["step"]) == (cb["epoch"], cb["step"])
    assert ca["model"].keys() == cb["model"].keys()
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), f"{a.name}: weight {k} differs"
    if "optimizer" in ca:
        sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for k, v in sa[i].items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[i][k])), f"optimizer state {i}.{k}"
    assert strip(ca["history"]) == strip(cb["history"])
    assert ca["config"] == cb["config"]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)
    return err


# ------------------------------------------------------------------------------- MCM pre-training
PRE = ("pretrain", "--data", "random", "--profile", "smoke", "--num-samples", "32", "--batch-size", "8",
       "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def pre_ref(runner, tmp_path_factory) -> Path:
    """An uninterrupted 4-epoch pre-training run with an epoch checkpoint at 2."""
    out = tmp_path_factory.mktemp("pre") / "ref"
    ok(cli(runner, *PRE, "--epochs", "4", "--save-epochs", "2", "--out", str(out)))
    return out


def _check_pretrain_run(out: Path, ref: Path) -> None:
    assert_same_checkpoint(out / "last.pt", ref / "last.pt")
    assert_same_checkpoint(out / "epoch_0002.pt", ref / "epoch_0002.pt")
    hist = read_checkpoint(out / "last.pt")["history"]
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    # the log is a copy of the checkpoint's history: one row per epoch, the same values
    log = [r for r in JsonlLogger.read(out / "log.jsonl") if r.get("kind") == "epoch"]
    assert strip(log) == strip(hist)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extra"]["epochs_done"] == 4 and strip(summary["extra"]["history"]) == strip(hist)
    assert not list(out.glob(".*.tmp")), "a temp file of the killed write was left behind"


@pytest.mark.parametrize("fault", [
    "after:last.pt:2",       # checkpoint of epoch 2 written, killed before its log line
    "during:last.pt:3",      # killed inside the write of epoch 3's checkpoint
    "after:epoch_0002.pt:1",  # epoch checkpoint written, killed before last.pt of the same epoch
], ids=["between-checkpoint-and-log", "inside-checkpoint-write", "between-epoch-file-and-last"])
def test_killed_pretraining_resumes_bit_identical(runner, pre_ref, tmp_path, fault):
    out = tmp_path / "run"
    first = cli(runner, *PRE, "--epochs", "4", "--save-epochs", "2", "--out", str(out), fault=fault)
    assert killed(first), first.stderr[-2000:]
    assert not (out / "summary.json").exists()
    ok(cli(runner, *PRE, "--epochs", "4", "--save-epochs", "2", "--out", str(out)))
    _check_pretrain_run(out, pre_ref)


def test_pretraining_killed_twice_with_save_every_keeps_one_history_row_per_epoch(runner, tmp_path):
    """``--save-every 2`` plus two kills (the issue saw 14 history rows for 12 epochs)."""
    args = (*PRE, "--epochs", "6", "--save-every", "2")
    ref = tmp_path / "ref"
    ok(cli(runner, *args, "--out", str(ref)))
    out = tmp_path / "run"
    assert killed(cli(runner, *args, "--out", str(out), fault="after:last.pt:1"))  # after epoch 2's checkpoint
    assert killed(cli(runner, *args, "--out", str(out), fault="after:last.pt:1"))  # after epoch 4's
    assert read_checkpoint(out / "last.pt")["epoch"] == 4
    ok(cli(runner, *args, "--out", str(out)))
    assert_same_checkpoint(out / "last.pt", ref / "last.pt")
    hist = read_checkpoint(out / "last.pt")["history"]
    log = [r["epoch"] for r in JsonlLogger.read(out / "log.jsonl") if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in hist] == log == [1, 2, 3, 4, 5, 6]


def test_pretraining_killed_from_outside_at_any_moment_resumes_identical(runner, pre_ref, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="1")
    env.pop("AU_TEST_FAULT", None)
    p = subprocess.Popen([sys.executable, str(runner), *PRE, "--epochs", "4", "--save-epochs", "2",
                          "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    ok(cli(runner, *PRE, "--epochs", "4", "--save-epochs", "2", "--out", str(out)))
    _check_pretrain_run(out, pre_ref)


# --------------------------------------------------------------------------------- fine-tuning
FT = ("finetune", "--method", "scratch:resnet18", "--data", "fakeau", "--profile", "smoke", "--device", "cpu",
      "--no-progress")


def _result(path: Path) -> tuple[dict, dict]:
    res = json.loads(path.read_text())
    preds = np.load(path.with_suffix(".preds.npz"))
    return res["metrics"], {k: preds[k] for k in preds.files}


def _same_result(a: Path, b: Path) -> None:
    ma, pa = _result(a)
    mb, pb = _result(b)
    assert ma == mb
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


@pytest.fixture(scope="module")
def ft_ref(runner, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    out = root / "ref.json"
    ok(cli(runner, *FT, "--out", str(out), cache=root / "cache"))
    return out


@pytest.mark.parametrize("fault", ["after:*.ckpt.pt:1", "during:*.ckpt.pt:2", "after:*.outcome.pt:2",
                                   "after:*.preds.npz:1"],
                         ids=["mid-fold", "inside-fold-checkpoint", "between-folds", "before-result-file"])
def test_killed_finetuning_resumes_to_the_identical_result(runner, ft_ref, tmp_path, fault):
    out = tmp_path / "r.json"
    cache = tmp_path / "cache"
    assert killed(cli(runner, *FT, "--out", str(out), fault=fault, cache=cache))
    assert not out.exists()
    ok(cli(runner, *FT, "--out", str(out), cache=cache))
    _same_result(out, ft_ref)
    assert not (out.parent / "work").exists() or not any((out.parent / "work").rglob("*.pt"))


def test_finetuning_rerun_with_changed_epochs_does_not_reuse_the_killed_run(runner, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "r.json"
    assert killed(cli(runner, *FT, "--out", str(out), fault="after:*.outcome.pt:1", cache=cache))
    ok(cli(runner, *FT, "--epochs", "1", "--out", str(out), cache=cache))
    ref = tmp_path / "ref.json"
    ok(cli(runner, *FT, "--epochs", "1", "--out", str(ref), cache=tmp_path / "cache2"))
    _same_result(out, ref)
    assert json.loads(out.read_text())["config"]["settings"]["scratch"]["epochs"] == 1


# --------------------------------------------------------------------------------- sweeps (ablate)
def _ablate(results: Path, work: Path, epochs: str = "0,2") -> tuple[str, ...]:
    return ("ablate", "epochs", "--profile", "smoke", "--epochs", epochs, "--results", str(results),
            "--work", str(work), "--device", "cpu", "--no-progress")


def _metrics(results: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text())["metrics"] for p in sorted(results.glob("*.json"))}


@pytest.fixture(scope="module")
def sweep_ref(runner, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    ok(cli(runner, *_ablate(root / "r", root / "w")))
    assert len(list((root / "r").glob("*.json"))) == 2
    return root


@pytest.mark.parametrize("fault", ["after:last.pt:1", "during:epoch_0002.pt:1", "after:mcm-r0.50-e2-ep000-rgb.json:1"],
                         ids=["mid-pretraining", "inside-epoch-checkpoint", "after-first-point"])
def test_killed_sweep_resumes_to_identical_results(runner, sweep_ref, tmp_path, fault):
    r, w = tmp_path / "r", tmp_path / "w"
    assert killed(cli(runner, *_ablate(r, w), fault=fault))
    ok(cli(runner, *_ablate(r, w)))
    assert _metrics(r) == _metrics(sweep_ref / "r")
    run = next((w / "runs").iterdir())
    assert_same_checkpoint(run / "epoch_0002.pt", next((sweep_ref / "w" / "runs").iterdir()) / "epoch_0002.pt")


def test_sweep_rerun_asking_for_an_epoch_the_killed_run_passed_restarts_it(runner, tmp_path):
    """Killed at epoch 1 of a run that keeps epoch 2 only; the rerun wants epoch 1: the run restarts
    (deterministically) instead of resuming past it, and the point equals an uninterrupted one."""
    r, w = tmp_path / "r", tmp_path / "w"
    assert killed(cli(runner, *_ablate(r, w), fault="after:last.pt:1"))
    ok(cli(runner, *_ablate(r, w, "0,1")))
    ref = tmp_path / "ref"
    ok(cli(runner, *_ablate(ref / "r", ref / "w", "0,1")))
    assert _metrics(r) == _metrics(ref / "r")


def test_sweep_losses_come_from_the_checkpoint_not_the_log(sweep_ref, tmp_path):
    """The sweep's per-epoch losses are read from the epoch checkpoint's own history."""
    from au_lib.experiments.ablations import MCMPretrain
    from au_lib.experiments.sweep import Run

    run_dir = next((sweep_ref / "w" / "runs").iterdir())
    work = tmp_path / "work"
    shutil.copytree(run_dir, work)
    (work / "log.jsonl").write_text('{"kind": "epoch", "epoch": 2, "loss": 99.0}\n')  # a log that disagrees
    cfg = read_checkpoint(work / "epoch_0002.pt")["config"]
    got = MCMPretrain("smoke", "cpu", progress=False)(Run("x", {"pretrain": cfg}, (0, 2)), work)
    hist = read_checkpoint(work / "epoch_0002.pt")["history"]
    assert got[2].stats["loss"] == hist[-1]["loss"] != 99.0


@pytest.mark.parametrize("field, value", [("epochs", 3), ("blr", 0.01), ("num_samples", 32)])
def test_sweep_run_folder_of_another_config_is_refused(sweep_ref, tmp_path, field, value):
    """A sweep's work folder is keyed on its run's config, so a changed setting gets a new folder; a
    folder holding a run of another config (copied, renamed) is refused naming last.pt and the field."""
    from au_lib.experiments.ablations import MCMPretrain
    from au_lib.experiments.sweep import Run, run_work_dir
    from au_lib.train.engine import ResumeError

    run_dir = next((sweep_ref / "w" / "runs").iterdir())
    work = tmp_path / "work"
    shutil.copytree(run_dir, work)
    (work / "epoch_0002.pt").unlink()
    cfg = dict(read_checkpoint(work / "last.pt")["config"], **{field: value})
    run = Run("x", {"pretrain": cfg}, (3,) if field == "epochs" else (2,))
    assert run_work_dir(tmp_path, run) != run_work_dir(tmp_path, Run("x", {"pretrain": {**cfg, field: None}}, (2,)))
    before = files(work)
    if field == "epochs":  # epoch 3 of a 3-epoch run: resuming the 2-epoch run would change its schedule
        with pytest.raises(ResumeError, match=r"last.pt: cannot resume.*epochs: 2 -> 3"):
            MCMPretrain("smoke", "cpu", progress=False)(run, work)
        assert files(work) == before
    else:  # it passed epoch 2 without keeping it: restarted from scratch with the new config
        got = MCMPretrain("smoke", "cpu", progress=False)(run, work)
        assert read_checkpoint(got[2].path)["config"][field] == value


@pytest.mark.parametrize("name", ["epoch_0000.pt", "epoch_0002.pt", "last.pt"])
def test_damaged_sweep_checkpoint_is_recomputed(runner, sweep_ref, tmp_path, name):
    r, w = tmp_path / "r", tmp_path / "w"
    shutil.copytree(sweep_ref / "w", w)
    run = next((w / "runs").iterdir())
    (run / name).write_bytes((run / name).read_bytes()[:100])  # truncated
    if name == "last.pt":
        (run / "epoch_0002.pt").unlink()  # so that the run has to look at last.pt
    proc = ok(cli(runner, *_ablate(r, w)))
    assert f"{name}: cannot read sweep checkpoint" in proc.stderr or \
        f"{name}: cannot read pre-training checkpoint" in proc.stderr
    assert _metrics(r) == _metrics(sweep_ref / "r")
    ref_run = next((sweep_ref / "w" / "runs").iterdir())
    assert_same_checkpoint(run / "epoch_0002.pt", ref_run / "epoch_0002.pt")
    assert read_checkpoint(run / "epoch_0000.pt")["epoch"] == 0


# ------------------------------------------------------------------------------------ TCAE (CLI only)
TC = ("train-tcae", "--data", "toy", "--profile", "smoke", "--steps", "8", "--batch-size", "4",
      "--checkpoint-every", "2", "--device", "cpu", "--no-progress")


def test_killed_tcae_training_resumes_bit_identical(runner, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "run"
    ok(cli(runner, *TC, "--out", str(ref)))
    assert killed(cli(runner, *TC, "--out", str(out), fault="after:last.pt:3"))  # after step 4 (0, 2, 4)
    ok(cli(runner, *TC, "--out", str(out)))
    assert_same_checkpoint(out / "last.pt", ref / "last.pt")


def test_killed_tcae_training_keeps_every_step_snapshot(runner, tmp_path):
    out = tmp_path / "run"
    assert killed(cli(runner, *TC, "--out", str(out), fault="after:last.pt:3"))  # step 4's last.pt, not its snapshot
    ok(cli(runner, *TC, "--out", str(out)))
    assert sorted(p.name for p in out.glob("ckpt_*.pt")) == [f"ckpt_{s:07d}.pt" for s in (0, 2, 4, 6, 8)]


def test_killed_tcae_training_keeps_history_and_checkpoint_in_step(runner, tmp_path):
    out = tmp_path / "run"
    assert killed(cli(runner, *TC, "--out", str(out), fault="after:last.pt:3"))
    ck = read_checkpoint(out / "last.pt")
    assert ck["step"] == 4 and all(r["step"] <= 4 for r in ck["history"])
    ok(cli(runner, *TC, "--out", str(out)))
    ck = read_checkpoint(out / "last.pt")
    log = JsonlLogger.read(out / "log.jsonl")
    assert ck["step"] == 8 and [r["step"] for r in log] == [r["step"] for r in ck["history"]]
    assert len({r["step"] for r in log}) == len(log)  # no row twice


@pytest.mark.parametrize("change", [("--lr", "0.5"), ("--batch-size", "2"), ("--seed", "3")])
def test_tcae_resume_with_a_changed_setting_is_refused(runner, tmp_path, change):
    out = tmp_path / "run"
    ok(cli(runner, *TC, "--out", str(out)))
    before = files(out)
    proc = cli(runner, *TC, *change, "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "last.pt: cannot resume" in proc.stderr and change[0][2:].replace("-", "_") in proc.stderr
    assert files(out) == before


def test_tcae_damaged_checkpoint_stops_naming_it(runner, tmp_path):
    out = tmp_path / "run"
    ok(cli(runner, *TC, "--out", str(out)))
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:500])
    before = files(out)
    proc = cli(runner, *TC, "--out", str(out))
    assert proc.returncode == 2 and "last.pt: cannot read checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and files(out) == before


# ------------------------------------------------------------------- resume with another setting
@pytest.fixture(scope="module")
def finished_pretrain(tmp_path_factory) -> Path:
    """A finished 2-epoch smoke pre-training run (in-process)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*PRE, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("change, field", [
    (("--epochs", "3"), "epochs: 2 -> 3"),
    (("--epochs", "1"), "epochs: 2 -> 1"),
    (("--num-samples", "16"), "num_samples: 32 -> 16"),
    (("--lr", "0.01"), "lr: None -> 0.01"),
    (("--blr", "0.01"), "blr: 0.0015 -> 0.01"),
    (("--batch-size", "4"), "batch_size: 8 -> 4"),
    (("--accum-iter", "2"), "accum_iter: 1 -> 2"),
    (("--mask-ratio", "0.25"), "model.mask_ratio: 0.5 -> 0.25"),
    (("--warmup-epochs", "1"), "warmup_epochs: 0.5 -> 1"),
    (("--seed", "1"), "seed: 0 -> 1"),
    (("--amp", "bf16"), "amp: True -> 'bf16'"),
    (("--norm-pix-loss",), "model.norm_pix_loss: False -> True"),
    (("--no-subset-embedding",), "model.subset_embedding: True -> False"),
], ids=lambda v: v[0] if isinstance(v, tuple) else None)
def test_pretrain_resume_with_a_changed_setting_is_refused(finished_pretrain, tmp_path, capsys, change, field):
    out = tmp_path / "run"
    shutil.copytree(finished_pretrain, out)
    before = files(out)
    capsys.readouterr()
    assert main([*PRE, "--epochs", "2", *change, "--out", str(out)]) == 2
    one_line_error(capsys, f"{out / 'last.pt'}: cannot resume", field, "use another folder or restart")
    assert files(out) == before  # nothing rewritten, not even the log or the summary


def test_pretrain_resume_may_change_what_does_not_change_the_result(finished_pretrain, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_pretrain, out)
    before = read_checkpoint(out / "last.pt")
    assert main([*PRE, "--epochs", "2", "--save-every", "2", "--num-workers", "0", "--out", str(out)]) == 0
    after = read_checkpoint(out / "last.pt")
    assert after["epoch"] == 2 and all(torch.equal(v, after["model"][k]) for k, v in before["model"].items())


def test_pretrain_restart_with_another_setting_starts_over(finished_pretrain, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_pretrain, out)
    assert main([*PRE, "--epochs", "1", "--restart", "--out", str(out)]) == 0
    ck = read_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1 and ck["config"]["epochs"] == 1 and len(ck["history"]) == 1
    assert len(JsonlLogger.read(out / "log.jsonl")) == 1


# ------------------------------------------------------------------------ damaged checkpoints (user files)
class Foreign:
    """Not something a checkpoint may hold: ``weights_only`` refuses to build it."""


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(2048))
    elif how == "not-a-checkpoint":
        torch.save(torch.zeros(3), path)
    elif how == "foreign-object":
        torch.save({"model": {}, "epoch": 1, "payload": Foreign()}, path)
    else:
        raise AssertionError(how)


DAMAGE = {"truncated": "damaged or not a torch file", "empty": "the file is empty",
          "garbage": "damaged or not a torch file", "not-a-checkpoint": "not a training checkpoint",
          "foreign-object": "holds objects other than tensors and plain values"}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_damaged_last_checkpoint_stops_with_a_message_naming_it(finished_pretrain, tmp_path, capsys, how):
    out = tmp_path / "run"
    shutil.copytree(finished_pretrain, out)
    _damage(out / "last.pt", how)
    before = files(out)
    capsys.readouterr()
    assert main([*PRE, "--epochs", "2", "--out", str(out)]) == 2
    one_line_error(capsys, str(out / "last.pt"), DAMAGE[how])
    assert files(out) == before  # the user's file is left for them to inspect or restore
    if how == "truncated":  # --restart (as the message says) then trains afresh, as an uninterrupted run
        assert main([*PRE, "--epochs", "2", "--restart", "--out", str(out)]) == 0
        assert_same_checkpoint(out / "last.pt", finished_pretrain / "last.pt")


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_pretrained_weights_given_to_finetune_stop_naming_them(finished_pretrain, tmp_path, capsys, how):
    from au_lib.models.mcm import load_pretrained_encoder

    ckpt = tmp_path / "mcm.pt"
    shutil.copy(finished_pretrain / "last.pt", ckpt)
    assert load_pretrained_encoder(ckpt) is not None
    _damage(ckpt, how)
    with pytest.raises(DamagedFileError, match=rf"{ckpt}: cannot read MCM checkpoint.*pass another --checkpoint"):
        load_pretrained_encoder(ckpt)


def test_a_checkpoint_loads_without_running_pickled_code(tmp_path):
    """weights_only: the loader refuses objects that could run code when unpickled."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Foreign()}, path)
    with pytest.raises(DamagedFileError, match="holds objects other than tensors"):
        load_torch_file(path, what="checkpoint")
    ok_path = tmp_path / "fine.pt"
    torch.save({"a": np.arange(3), "s": np.array(["S01"]), "t": torch.ones(2), "v": str(torch.__version__)}, ok_path)
    got = load_torch_file(ok_path)
    assert got["a"].tolist() == [0, 1, 2] and got["s"].tolist() == ["S01"]


def test_a_full_disk_during_a_checkpoint_is_one_error_and_keeps_the_last_good_one(tmp_path, capsys, monkeypatch):
    import errno

    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second checkpoint write: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    out = tmp_path / "run"
    monkeypatch.setattr(os, "fsync", fsync)
    capsys.readouterr()
    assert main([*PRE, "--epochs", "2", "--out", str(out)]) == 2
    one_line_error(capsys, "No space left on device", str(out / "last.pt"))
    monkeypatch.setattr(os, "fsync", real)
    assert read_checkpoint(out / "last.pt")["epoch"] == 1  # epoch 1's checkpoint is intact
    assert not list(out.glob(".*.tmp"))
    assert main([*PRE, "--epochs", "2", "--out", str(out)]) == 0  # resumes once there is room
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


# ------------------------------------------------------------------------------- damaged caches
@pytest.fixture
def fake_registry(monkeypatch, tmp_path):
    from au_lib.data import registry

    if str(HERE) not in sys.path:
        monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setitem(registry.DATASET_MODULES, "fakeau", "_fake_au")
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    return tmp_path / "cache"


def test_damaged_frame_table_cache_is_recomputed(fake_registry):
    from au_lib.experiments.protocol import load_table

    first = load_table("fakeau", {}, ("rgb",), 32, "smoke", 4)
    (path,) = (fake_registry / "detection" / "frames").glob("*.pt")
    _damage(path, "truncated")
    with pytest.warns(UserWarning, match=rf"{path.name}: cannot read frame table cache.*recomputing it"):
        again = load_table("fakeau", {}, ("rgb",), 32, "smoke", 4)
    assert torch.equal(again.x, first.x) and torch.equal(again.au, first.au)
    assert load_torch_file(path)["x"].shape == first.x.shape  # rewritten whole
    torch.save({"x": 1}, path)  # readable but not a frame table
    with pytest.warns(UserWarning, match="damaged frame table cache"):
        assert torch.equal(load_table("fakeau", {}, ("rgb",), 32, "smoke", 4).x, first.x)


def test_damaged_feature_cache_is_recomputed(fake_registry):
    from au_lib.experiments.methods import Method
    from au_lib.experiments.protocol import load_table, probe_features, protocol_settings

    table = load_table("fakeau", {}, ("rgb",), 32, "smoke", 4)
    s = protocol_settings("smoke")
    m = Method.parse("probe:pixels")
    first = probe_features(table, m, s, profile="smoke")
    (path,) = (fake_registry / "detection" / "features").glob("*.pt")
    for how in ("truncated", "not-a-checkpoint"):  # unreadable, then a tensor of the wrong shape
        _damage(path, how)
        with pytest.warns(UserWarning, match=rf"{path.name}: .*feature cache.*recomputing it"):
            assert torch.equal(probe_features(table, m, s, profile="smoke"), first)


@pytest.mark.parametrize("which", ["outcome", "ckpt"])
def test_damaged_fold_work_file_is_recomputed(fake_registry, tmp_path, monkeypatch, which):
    from dataclasses import replace

    from au_lib.experiments import protocol as P

    s = replace(P.protocol_settings("smoke"), max_frames_per_subject=6)
    ref = P.run_protocol("probe:pixels", "fakeau", {}, profile="smoke", settings=s, out=tmp_path / "ref.json",
                         device="cpu", progress=False)
    out = tmp_path / "r.json"
    real, calls = P.run_fold, []

    def interrupted(table, fold, *a, **k):  # fold 2 stops after its first epoch checkpoint
        calls.append(fold.index)
        if fold.index == 2:
            raise KeyboardInterrupt
        return real(table, fold, *a, **k)

    monkeypatch.setattr(P, "run_fold", interrupted)
    with pytest.raises(KeyboardInterrupt):
        P.run_protocol("probe:pixels", "fakeau", {}, profile="smoke", settings=s, out=out, device="cpu",
                       progress=False)
    monkeypatch.setattr(P, "run_fold", real)
    (work,) = (tmp_path / "work").iterdir()
    if which == "outcome":
        target = work / "seed0-fold1.outcome.pt"
    else:  # an interrupted fold's checkpoint, damaged
        target = work / "seed0-fold2.ckpt.pt"
        save_checkpoint(target, model=torch.nn.Linear(1, 1), config={})
    _damage(target, "truncated")
    with pytest.warns(UserWarning, match=rf"{target.name}: cannot read .*(recomputing it|restarting the fold)"):
        res = P.run_protocol("probe:pixels", "fakeau", {}, profile="smoke", settings=s, out=out, device="cpu",
                             progress=False)
    assert res["metrics"] == ref["metrics"]


def test_load_cached_torch_check_rejects_and_deletes(tmp_path):
    path = tmp_path / "c.pt"
    assert load_cached_torch(path) is None  # absent: compute it
    torch.save(torch.ones(3), path)

    def check(t):
        if t.ndim != 2:
            raise ValueError("expected 2-D")
    with pytest.warns(UserWarning, match=r"c.pt: damaged cache entry \(expected 2-D\); recomputing it"):
        assert load_cached_torch(path, check=check) is None
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="c.pt: no checkpoint there"):
        load_torch_file(path, what="checkpoint")


# ---------------------------------------------------------------------- prepared data: content key
def test_reprepared_labels_with_the_same_frame_count_do_not_reuse_a_stale_frame_table(tmp_path, monkeypatch):
    from test_faults_data import image_folder, make_job, run

    from au_lib.experiments.protocol import load_table, open_for_protocol

    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))
    src = image_folder(tmp_path / "f", [1, 2, 3])
    prep = tmp_path / "prepared"
    run([make_job("F001", "T1", src, [1, 2, 3])], prep)
    opts = {"prepared": str(prep), "frame_stride": 1}
    first = load_table("bp4d", opts, ("rgb",), 32, "smoke", None)
    key = open_for_protocol("bp4d", opts, ("rgb",), 32, "smoke")[1]
    run([make_job("F001", "T1", src, [1, 2, 3], au_offset=1)], prep)  # same folder, same 3 frames, new labels
    again = load_table("bp4d", opts, ("rgb",), 32, "smoke", None)
    assert len(again) == len(first) == 3
    assert open_for_protocol("bp4d", opts, ("rgb",), 32, "smoke")[1] != key
    assert torch.equal(again.au, 1 - first.au)  # the new labels, not the cached old ones
    assert len(list((tmp_path / "cache" / "detection" / "frames").glob("*.pt"))) == 2


# --------------------------------------------------------------------------- senseless options
BAD_OPTIONS = [
    # (argv after the command, text the one-line error must contain)
    (("pretrain", "--epochs", "0"), "argument --epochs: must be an integer >= 1, got '0'"),
    (("pretrain", "--epochs", "-3"), "argument --epochs: must be an integer >= 1"),
    (("pretrain", "--epochs", "2.5"), "argument --epochs: expected an integer, got '2.5'"),
    (("pretrain", "--accum-iter", "0"), "argument --accum-iter: must be an integer >= 1"),
    (("pretrain", "--save-every", "0"), "argument --save-every: must be an integer >= 1"),
    (("pretrain", "--num-samples", "0"), "argument --num-samples: must be an integer >= 1"),
    (("pretrain", "--batch-size", "0"), "argument --batch-size: must be an integer >= 1"),
    (("pretrain", "--num-workers", "-1"), "argument --num-workers: must be an integer >= 0"),
    (("pretrain", "--lr", "nan"), "argument --lr: expected a finite number, got 'nan'"),
    (("pretrain", "--lr", "-0.001"), "argument --lr: must be a number > 0"),
    (("pretrain", "--blr", "inf"), "argument --blr: expected a finite number"),
    (("pretrain", "--warmup-epochs", "-1"), "argument --warmup-epochs: must be a number >= 0"),
    (("pretrain", "--mask-ratio", "1.5"), "argument --mask-ratio: must be a number in (0, 1)"),
    (("pretrain", "--mask-ratio", "0"), "argument --mask-ratio: must be a number in (0, 1)"),
    (("pretrain", "--save-epochs", "0,2"), "argument --save-epochs: '0,2': item '0' must be an integer >= 1"),
    (("pretrain", "--save-epochs", "2,,4"), "argument --save-epochs: expected comma-separated epochs"),
    (("finetune", "--method", "scratch:resnet18", "--epochs", "0"), "argument --epochs: must be an integer >= 1"),
    (("finetune", "--method", "scratch:resnet18", "--seeds", "1,x"), "argument --seeds: '1,x': item 'x' expected an integer"),
    (("finetune", "--method", "scratch:resnet18", "--seeds", "-1"), "argument --seeds: '-1': item '-1' must be an integer >= 0"),
    (("ablate", "epochs", "--epochs", "0,-1"), "argument --epochs: '0,-1': item '-1' must be an integer >= 0"),
    (("ablate", "mask-ratio", "--mask-ratios", "0.5,nan"), "argument --mask-ratios: '0.5,nan': item 'nan' expected a finite"),
    (("ablate", "mask-ratio", "--mask-ratios", "1"), "argument --mask-ratios: '1': item '1' must be a number in (0, 1)"),
    (("pretrain", "--device", "bogus"), "argument --device: 'bogus' is not a device"),
    (("probe", "--method", "probe:pixels", "--device", "tpu:0"), "argument --device:"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=[" ".join(a[0][:1] + a[0][-2:]) for a in BAD_OPTIONS])
def test_senseless_option_is_one_error_with_status_2_and_writes_nothing(tmp_path, capsys, monkeypatch, argv,
                                                                          message):
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    out_opt = {"pretrain": ["--out", str(tmp_path / "out")], "finetune": ["--out", str(tmp_path / "out" / "r.json")],
               "probe": ["--out", str(tmp_path / "out" / "r.json")],
               "ablate": ["--results", str(tmp_path / "out"), "--work", str(tmp_path / "work")]}[argv[0]]
    capsys.readouterr()
    assert main([*argv, "--profile", "smoke", *out_opt]) == 2
    err = one_line_error(capsys, message)
    assert err.startswith(f"au-lib {argv[0]}: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no cache, nothing


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
@pytest.mark.parametrize("via", ["option", "environment"])
def test_a_device_the_machine_lacks_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch, via):
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))
    argv = [*PRE, "--out", str(tmp_path / "out")]
    argv.remove("--device")
    argv.remove("cpu")
    if via == "option":
        argv += ["--device", "cuda:7"]
    else:
        monkeypatch.setenv("AU_DEVICE", "cuda:7")
    capsys.readouterr()
    assert main(argv) == 2
    err = one_line_error(capsys, "'cuda:7'")
    assert ("CUDA is not available" in err) or ("CUDA device(s)" in err)
    assert ("$AU_DEVICE=" in err) == (via == "environment")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("case", ["out-is-a-file", "out-inside-a-file", "result-is-a-folder", "results-is-a-file"])
def test_an_output_path_that_cannot_be_one_is_refused(tmp_path, capsys, case):
    f = tmp_path / "a-file"
    f.write_text("keep me")
    argv, needle = {
        "out-is-a-file": ([*PRE, "--out", str(f)], "is a file; give a folder"),
        "out-inside-a-file": ([*PRE, "--out", str(f / "run")], "is a file, not a folder"),
        "result-is-a-folder": ([*FT, "--out", str(tmp_path)], "is a folder; give a file name"),
        "results-is-a-file": (["ablate", "epochs", "--profile", "smoke", "--results", str(f)], "is a file; give a folder"),
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    one_line_error(capsys, needle)
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root may write anywhere; needs an unprivileged user")
def test_an_output_folder_without_write_permission_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        capsys.readouterr()
        assert main([*PRE, "--out", str(ro / "run")]) == 2
        one_line_error(capsys, "permission denied")
        assert not (ro / "run").exists()
    finally:
        ro.chmod(0o700)


def test_option_types_accept_what_makes_sense():
    assert opt.positive_int("3") == 3 and opt.nonnegative_int("0") == 0
    assert opt.fraction("0.75") == 0.75 and opt.positive_float("1e-3") == 1e-3
    assert opt.comma_list(opt.positive_int, "epochs")("10, 20,50") == (10, 20, 50)
    assert opt.device("cpu") == "cpu"
    for f, text in ((opt.positive_int, "0"), (opt.finite_float, "-inf"), (opt.fraction, "1"),
                    (opt.nonnegative_float, "nan")):
        with pytest.raises(argparse.ArgumentTypeError):
            f(text)


def test_a_cuda_index_beyond_the_machines_gpus_is_refused(monkeypatch):
    """On a machine with one GPU (simulated): cuda:0 and cuda pass, cuda:7 names what exists."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert opt.check_device("cuda:0") == "cuda:0" and opt.check_device("cuda") == "cuda"
    with pytest.raises(ValueError, match=r"'cuda:7': this machine has 1 CUDA device\(s\), cuda:0 to cuda:0"):
        opt.check_device("cuda:7")


@pytest.mark.parametrize("option, value", [("--steps", "0"), ("--checkpoint-every", "0"), ("--batch-size", "0"),
                                           ("--lr", "nan")])
def test_train_tcae_senseless_option_is_one_error_and_writes_nothing(tmp_path, capsys, monkeypatch, option, value):
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    try:
        rc = main([*TC, option, value, "--out", str(tmp_path / "run")])
    except Exception:  # a traceback is a failure of this test, not of the harness
        rc = None
    assert rc == 2
    one_line_error(capsys, f"argument {option}:")
    assert not (tmp_path / "run").exists()
