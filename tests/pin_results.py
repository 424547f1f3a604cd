#!/usr/bin/env python3
"""Record the exact losses and results of short runs of every training path, to compare two versions
of the code (a refactor must leave them identical where the maths does not change).

    PYTHONPATH=. python tests/pin_results.py before.json      # in a checkout of the old version
    PYTHONPATH=. python tests/pin_results.py after.json       # in the new one
    python tests/pin_results.py --compare before.json after.json

Runs (CPU, one thread, seconds to a minute): MCM pre-training (3 epochs; with gradient accumulation,
interrupted after 1 epoch and resumed), TCAE training (Adam and SGD; interrupted and resumed),
``fit`` on a linear probe and on an MCM-encoder classifier with layer decay, and the whole AU
protocol (``probe:pixels``, ``scratch:resnet18``, ``scratch:vit``) on the tests' fake dataset. The
global RNG is seeded first: dropout and drop-path draw from it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def _param_sum(model) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def record() -> dict:
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    os.environ["AU_CACHE"] = str(tmp / "cache")
    out: dict = {}
    from au_lib.train.pretrain import RandomRGBDT, pretrain, resolve_config

    cfg = resolve_config("smoke", epochs=3, batch_size=8, num_samples=32, save_epochs=(2,), warmup_epochs=1,
                         clip_grad=1.0)
    ds = RandomRGBDT(32, 32, seed=1)
    r = pretrain(cfg, ds, tmp / "p", show_progress=False)
    out["pretrain"] = [{k: v for k, v in h.items() if k not in ("images_per_s", "epoch_time_s")} for h in r.history]
    out["pretrain_param_sum"] = _param_sum(r.model)
    cfg2 = replace(cfg, accum_iter=2)
    pretrain(cfg2, ds, tmp / "p2", show_progress=False, stop_after_epochs=1)
    r = pretrain(cfg2, ds, tmp / "p2", show_progress=False)
    out["pretrain_accum_resumed"] = [h["loss"] for h in r.history]
    out["pretrain_accum_param_sum"] = _param_sum(r.model)

    from au_lib.train.tcae import ToyPairs, train_config, train_tcae

    tc = train_config("smoke", steps=12, batch_size=4, checkpoint_every=6, log_every=3, lr=2e-3)
    toy = ToyPairs(n=16, image_size=32, seed=0)
    run = train_tcae(tc, tmp / "t", data=toy, progress=False)
    out["tcae"], out["tcae_param_sum"] = run.history, _param_sum(run.model)
    train_tcae(replace(tc, steps=6), tmp / "t2", data=toy, progress=False)
    out["tcae_resumed_param_sum"] = _param_sum(train_tcae(tc, tmp / "t2", data=toy, progress=False).model)
    out["tcae_sgd"] = train_tcae(replace(tc, optimizer="sgd", lr=1e-2), tmp / "t3", data=toy, progress=False).history

    from au_lib.models.heads import EncoderClassifier, LinearProbe
    from au_lib.models.mcm import MCM_PROFILES, MCMEncoder
    from au_lib.train.finetune import TrainConfig, fit

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 16, generator=g), (torch.rand(120, 4, generator=g) < 0.4).float()
    y[:5, 0] = -1
    fc = TrainConfig(epochs=5, batch_size=16, lr=1e-2, patience=10, flip=False, warmup_epochs=1.5)
    torch.manual_seed(0)
    f = fit(LinearProbe(16, 4), (x[:90], y[:90]), (x[90:], y[90:]), fc, seed=5, weights=[1, 2, 0.5, 1])
    out["fit_probe"], out["fit_probe_best"] = f.history, [f.best_epoch, f.best_val_f1]
    torch.manual_seed(0)
    enc = MCMEncoder(MCM_PROFILES["smoke"])
    xi, yi = torch.rand(40, 3, 32, 32, generator=g), (torch.rand(40, 4, generator=g) < 0.4).float()
    fc2 = TrainConfig(epochs=2, batch_size=8, lr=1e-3, patience=10, flip=True, warmup_epochs=0.5, layer_decay=0.75)
    f = fit(EncoderClassifier(enc, enc.embed_dim, 4), (xi[:30], yi[:30]), (xi[30:], yi[30:]), fc2, seed=3)
    out["fit_mcm"], out["fit_mcm_param_sum"] = f.history, _param_sum(f.model)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from au_lib.data import registry
    from au_lib.experiments import protocol as P

    registry.DATASET_MODULES["fakeau"] = "_fake_au"
    settings = P.protocol_settings("smoke", max_frames_per_subject=None, report_test_tuned=True)
    torch.manual_seed(0)
    for m in ("probe:pixels", "scratch:resnet18", "scratch:vit"):
        res = P.run_protocol(m, "fakeau", {}, profile="smoke", settings=settings, progress=False, device="cpu",
                             out=tmp / f"{m.replace(':', '_')}.json")
        out[f"protocol {m}"] = res["metrics"]
    return json.loads(json.dumps(out, default=float))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--compare"]:
        a, b = (json.loads(Path(p).read_text()) for p in argv[1:3])
        same = True
        for k in sorted(set(a) | set(b)):
            ok = a.get(k) == b.get(k)
            same &= ok
            print(f"{'identical' if ok else 'DIFFERENT'}  {k}")
        return 0 if same else 1
    Path(argv[0]).write_text(json.dumps(record(), indent=1, sort_keys=True))
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
