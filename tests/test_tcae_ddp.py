"""TCAE training under DDP: two CPU processes on gloo end with identical weights (torchrun's env vars)."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.multiprocessing as mp
from _distributed import free_port, set_rank_env


def _worker(rank: int, world: int, port: int, run_dir: str, out_dir: str) -> None:
    set_rank_env(rank, world, port)
    torch.set_num_threads(1)
    from au_lib.train.engine import distributed
    from au_lib.train.tcae import ToyPairs, train_config, train_tcae

    cfg = replace(train_config("smoke"), steps=4, batch_size=4, checkpoint_every=4, log_every=2)
    with distributed(backend="gloo"):  # the caller sets up and tears down the process group
        run = train_tcae(cfg, run_dir, data=ToyPairs(n=16, image_size=32), device="cpu", progress=False)
    torch.save({k: v.detach().clone() for k, v in run.model.state_dict().items()}, f"{out_dir}/rank{rank}.pt")


def test_ddp_two_processes_gloo(tmp_path):
    port = free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    init = torch.load(tmp_path / "run" / "ckpt_0000000.pt", weights_only=False)["model"]
    moved = False
    for k in a:
        if a[k].is_floating_point() and "running" not in k:
            torch.testing.assert_close(a[k], b[k], msg=f"parameter {k} differs between ranks")
            moved |= not torch.equal(a[k], init[k])
    assert moved, "training did not change the weights"
    # only rank 0 writes: one log with the two logged steps
    rows = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(rows) == 2
    assert (tmp_path / "run" / "ckpt_0000004.pt").exists()
