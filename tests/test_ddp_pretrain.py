"""DDP pre-training: two CPU processes (gloo) must end with identical weights, as torchrun would run it."""

from __future__ import annotations


import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _distributed import free_port, set_rank_env


def _worker(rank: int, world: int, port: int, out: str) -> None:
    set_rank_env(rank, world, port)
    torch.set_num_threads(1)
    from au_lib.train.engine import cleanup_distributed, init_distributed
    from au_lib.train.pretrain import RandomRGBDT, pretrain, resolve_config

    info = init_distributed(backend="gloo")
    assert info.world_size == world and info.rank == rank
    try:
        cfg = resolve_config("smoke", epochs=2, batch_size=4, accum_iter=2, warmup_epochs=0.5, save_epochs=())
        res = pretrain(cfg, RandomRGBDT(32, 32, seed=3), out, device="cpu", show_progress=False)
        torch.save({"state": res.model.state_dict(), "history": res.history}, f"{out}/rank{rank}.pt")
    finally:
        cleanup_distributed()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_process_gloo_ranks_end_identical(tmp_path):
    from au_lib.models.mcm import MCM, MCM_PROFILES

    world = 2
    mp.start_processes(_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True,
                       start_method="spawn")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    init = MCM(MCM_PROFILES["smoke"], seed=0).state_dict()
    changed = 0
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), f"ranks differ in {k}"
        changed += int(not torch.equal(v, init[k]))
    assert changed > 10  # training moved the weights
    # 32 samples / (4 per process x 2 processes) = 4 micro-steps per epoch, 2 accumulated per update
    assert [r["step"] for r in r0["history"]] == [2, 4]
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / "rank1").exists()
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(log) == 2  # rank 0 logs alone
