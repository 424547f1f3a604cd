"""The training engine: resume is bit-identical, mismatched resumes are refused, AMP on CPU, accumulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from au_lib.train import engine

torch.set_num_threads(1)

CONFIG = {"lr": 0.1, "model": {"width": 8}, "epochs": 4}


def _data(n: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]


def _parts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=CONFIG["lr"])
    from timm.scheduler import CosineLRScheduler

    sched = CosineLRScheduler(opt, t_initial=12, warmup_t=4, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)
    gen = torch.Generator().manual_seed(1)
    return model, opt, sched, gen


def _step_fn(gen: torch.Generator):
    def step_fn(model, batch, step, micro):
        x, y = batch
        noise = 0.01 * torch.randn(x.shape, generator=gen)  # the run's own generator: must survive a resume
        return {"loss": nn.functional.mse_loss(model(x + noise), y), "batch_size": len(x)}
    return step_fn


def _run(model, opt, sched, gen, epochs: range, step: int = 0, history=None):
    history = list(history or [])
    for epoch in epochs:
        meter, step = engine.train_one_epoch(_step_fn(gen), model, _data(), opt, device="cpu", step=step,
                                             scheduler=sched, clip_grad=1.0)
        history.append({"epoch": epoch + 1, **meter.means()})
    return step, history


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    full, opt, sched, gen = _parts()
    step_full, hist_full = _run(full, opt, sched, gen, range(4))

    model, opt, sched, gen = _parts()
    step, hist = _run(model, opt, sched, gen, range(2))
    path = engine.save_checkpoint(tmp_path / "last.pt", model=model, optimizer=opt, scheduler=sched,
                                  rng={"noise": gen}, step=step, epoch=2, history=hist, config=CONFIG)
    model, opt, sched, gen = _parts()  # a fresh process: new objects, restored from the file
    ckpt = engine.resume(path, CONFIG, model=model, optimizer=opt, scheduler=sched, rng={"noise": gen})
    assert ckpt["format"] == engine.CHECKPOINT_FORMAT and ckpt["epoch"] == 2 and ckpt["step"] == step == 8
    step, hist = _run(model, opt, sched, gen, range(2, 4), ckpt["step"], ckpt["history"])
    assert step == step_full == 16
    assert hist == hist_full
    for k, v in full.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not torch.equal(_parts()[0][0].weight, full[0].weight)  # it did train


def test_a_resume_with_another_config_is_refused_naming_file_and_field(tmp_path):
    model, opt, sched, gen = _parts()
    path = engine.save_checkpoint(tmp_path / "last.pt", model=model, optimizer=opt, step=3, config=CONFIG)
    assert engine.resume(tmp_path / "absent.pt", CONFIG, model=model) is None
    with pytest.raises(engine.ResumeError, match=r"last\.pt: cannot resume.*model\.width: 8 -> 16"):
        engine.resume(path, {**CONFIG, "model": {"width": 16}}, what="toy", model=model)
    # fields declared non-binding (run length) may change
    assert engine.resume(path, {**CONFIG, "epochs": 10}, ignore=("epochs",), model=model)["step"] == 3
    with pytest.raises(engine.ResumeError, match="epochs: 4 -> 10"):
        engine.resume(path, {**CONFIG, "epochs": 10}, model=model)
    # a generator the file does not hold is an error, not a silent fresh seed
    with pytest.raises(engine.ResumeError, match="generator 'noise'"):
        engine.resume(path, CONFIG, model=model, rng={"noise": gen})
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt: cannot read checkpoint"):
        engine.resume(tmp_path / "bad.pt", CONFIG)


def test_bf16_autocast_runs_on_cpu_and_auto_keeps_cpu_fp32():
    lin = nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with engine.autocast("cpu", "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with engine.autocast("cpu", True):  # the stored CPU results are fp32
        assert lin(x).dtype == torch.float32
    assert engine.amp_dtype("cuda", True) == torch.bfloat16 and engine.amp_dtype("cpu", False) is None
    with pytest.raises(ValueError, match="CUDA"):
        engine.amp_dtype("cpu", "fp16")
    with pytest.raises(ValueError, match="amp must be"):
        engine.amp_dtype("cpu", "int8")
    model, opt, sched, gen = _parts()
    meter, step = engine.train_one_epoch(_step_fn(gen), model, _data(), opt, device="cpu", amp="bf16")
    assert step == 4 and torch.isfinite(torch.tensor(meter.means()["loss"]))
    assert engine.grad_scaler("cpu", "bf16") is None


def test_accumulation_matches_one_large_batch_and_nonfinite_loss_stops():
    data = _data(16)
    big = [(torch.cat([data[0][0], data[1][0]]), torch.cat([data[0][1], data[1][1]]))]

    def step_fn(model, batch, step, micro):
        return {"loss": nn.functional.mse_loss(model(batch[0]), batch[1])}

    m1, o1, _, _ = _parts()
    m2, o2, _, _ = _parts()
    _, s1 = engine.train_one_epoch(step_fn, m1, data, o1, device="cpu", accum_iter=2)
    _, s2 = engine.train_one_epoch(step_fn, m2, big, o2, device="cpu")
    assert s1 == s2 == 1
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    def bad(model, batch, step, micro):
        return {"loss": model(batch[0]).sum() * float("nan")}

    with pytest.raises(FloatingPointError, match="toy: loss is nan at update 0"):
        engine.train_one_epoch(bad, m1, data, o1, device="cpu", desc="toy")


def test_max_batches_leaves_an_infinite_iterator_in_place():
    taken = iter(range(100))
    model, opt, _, _ = _parts()
    seen = []

    def step_fn(model, batch, step, micro):
        seen.append(batch)
        return {"loss": model(torch.ones(1, 8)).sum() * 0}

    _, step = engine.train_one_epoch(step_fn, model, taken, opt, device="cpu", max_batches=3)
    assert seen == [0, 1, 2] and step == 3 and next(taken) == 3
