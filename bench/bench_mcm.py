#!/usr/bin/env python3
"""MCM pre-training throughput against a plain reference MAE of the same size, measured in the same run.

References (written here, after facebookresearch/mae ``models_mae.py``: eager, fp32, explicit
softmax attention as in the timm 0.3.2 ``Block`` MAE pins, ``random_masking`` by argsort of noise):

- ``mae``: plain MAE, RGB in, one decoder reconstructing RGB; same encoder/decoder sizes as ours;
- ``mae3``: the same code extended the obvious way to MCM's work (5-channel input mixed to 3 channels,
  three decoders, loss over masked patches and dropped channels) -- the like-for-like reference.

``ours``: :class:`au_lib.models.mcm.MCM` (timm blocks with fused SDPA attention). A training step is
forward + backward + AdamW step on one batch; images/s is the median over timed repeats after warm-up.
On CUDA (paper size: ViT-B/16 at 224, three 8x512 decoders) ours runs with bf16 autocast and
``torch.compile`` against the fp32 eager references at batch 64, then alone at batch 256 for MFU
(model FLOPs / step time / peak bf16 FLOP/s) and peak memory. Besides images/s the CPU rows give
the FLOP rate: the plain MAE does less work per image (one decoder), so at equal efficiency ours
runs at (its FLOPs / ours) of its images/s.

Usage: ``python bench/bench_mcm.py [--out DIR] [--profile cpu] [--batch 32] [--repeats 5]
[--no-cpu] [--gpu-batch 64] [--mfu-batch 256]``; with ``--gpu-batch`` equal to ``--mfu-batch`` the
GPU part compiles and measures once (what ``bench/gpu_check.py`` does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from au_lib.models.mcm import (  # noqa: E402
    MCM,
    MCM_PROFILES,
    MCMConfig,
    decoder_flops_per_image,
    encoder_flops_per_image,
    mcm_train_flops_per_image,
    sincos_pos_embed,
)
from au_lib.ops.masking import MODALITY_CHANNELS, SUBSETS, patchify  # noqa: E402


# ----------------------------------------------------------------------------- reference (MAE style)
class RefAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class RefBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class RefMAE(nn.Module):
    """facebookresearch/mae MaskedAutoencoderViT, condensed; ``decoders`` maps name -> out channels."""

    def __init__(self, cfg: MCMConfig, decoders: dict[str, int], in_chans: int = 3):
        super().__init__()
        p, d, dd = cfg.patch_size, cfg.embed_dim, cfg.decoder_embed_dim
        self.p = p
        self.patch_embed = nn.Conv2d(in_chans, d, p, p)
        n = cfg.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(sincos_pos_embed(d, int(n ** 0.5)), requires_grad=False)
        self.blocks = nn.ModuleList(RefBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.dec = nn.ModuleDict()
        for name, c in decoders.items():
            m = nn.Module()
            m.embed = nn.Linear(d, dd)
            m.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
            m.pos = nn.Parameter(sincos_pos_embed(dd, int(n ** 0.5)), requires_grad=False)
            m.blocks = nn.ModuleList(RefBlock(dd, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth))
            m.norm = nn.LayerNorm(dd, eps=1e-6)
            m.pred = nn.Linear(dd, p * p * c)
            self.dec[name] = m

    def random_masking(self, x, mask_ratio):
        N, L, D = x.shape
        len_keep = int(L * (1 - mask_ratio))
        noise = torch.rand(N, L, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([N, L], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x, mask_ratio):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, m, x, ids_restore):
        x = m.embed(x)
        mask_tokens = m.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + m.pos
        for blk in m.blocks:
            x = blk(x)
        return m.pred(m.norm(x))[:, 1:, :]

    def forward(self, imgs, mask_ratio):  # plain MAE: RGB in, RGB out
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio)
        pred = self.forward_decoder(self.dec["rgb"], latent, ids_restore)
        loss = ((pred - patchify(imgs, self.p)) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward_mcm(self, x5, mask_ratio):  # the same code doing MCM's work, naively
        B = x5.shape[0]
        subsets = torch.tensor(SUBSETS, device=x5.device)[torch.randint(0, 10, (B,), device=x5.device)]
        x3 = torch.stack([x5[b, subsets[b]] for b in range(B)])
        latent, mask, ids_restore = self.forward_encoder(x3, mask_ratio)
        loss = 0.0
        for name, ch in MODALITY_CHANNELS.items():
            pred = self.forward_decoder(self.dec[name], latent, ids_restore)
            for j, c in enumerate(ch):
                t = patchify(x5[:, c:c + 1], self.p)
                e = ((pred.reshape(B, -1, self.p * self.p, len(ch))[..., j] - t) ** 2).mean(-1)
                dropped = ~(subsets == c).any(1)
                w = torch.where(dropped[:, None], torch.ones_like(mask), mask)
                loss = loss + (e * w).sum() / w.sum()
        return loss


# ----------------------------------------------------------------------------- timing
def time_steps(step, repeats, warmup, device) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_step(model, kind, x, device, amp=False, gen=None):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            if kind == "ours":
                loss = model(x, generator=gen).loss
            elif kind == "mae":
                loss = model(x[:, :3], 0.5)
            else:
                loss = model.forward_mcm(x, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_size(cfg: MCMConfig, batch: int, device, repeats: int, warmup: int, compile_ours: bool = False,
               amp: bool = False, with_refs: bool = True) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 5, cfg.img_size, cfg.img_size, device=device)
    gen = torch.Generator().manual_seed(0)
    rows, steps = {}, {}
    kinds = (["mae", "mae3"] if with_refs else []) + ["ours"]
    for kind in kinds:
        if kind == "ours":
            model = MCM(cfg, seed=0).to(device)
            fwd = torch.compile(model) if compile_ours else model
        else:
            model = RefMAE(cfg, {"rgb": 3} if kind == "mae" else {m: len(c) for m, c in MODALITY_CHANNELS.items()}).to(device)
            fwd = model
        steps[kind] = make_step(fwd, kind, x, device, amp=amp and kind == "ours", gen=gen)
        for _ in range(warmup):
            steps[kind]()
    # round-robin repeats so that load from other processes hits every model alike
    times = {k: [] for k in kinds}
    for _ in range(repeats):
        for kind in kinds:
            times[kind].append(time_steps(steps[kind], 1, 0, device))
    for kind in kinds:
        dt = statistics.median(times[kind])
        rows[kind] = {"images_per_s": batch / dt, "step_s": dt}
    if device.type == "cuda":  # peak memory of ours alone, after the references are gone
        steps = {"ours": steps["ours"]}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        steps["ours"]()
        torch.cuda.synchronize()
        rows["ours"]["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if with_refs:
        rows["ratio_vs_mae"] = rows["ours"]["images_per_s"] / rows["mae"]["images_per_s"]
        rows["ratio_vs_mae3"] = rows["ours"]["images_per_s"] / rows["mae3"]["images_per_s"]
        # the plain MAE does less work per image (one decoder instead of three): compare FLOP rates too
        enc = encoder_flops_per_image(cfg, 0.5)
        rows["train_flops_per_image"] = {"mae": 3 * (enc + decoder_flops_per_image(cfg)),
                                         "ours": 3 * (enc + 3 * decoder_flops_per_image(cfg))}
        rows["flop_rate_ratio_vs_mae"] = rows["ratio_vs_mae"] * (rows["train_flops_per_image"]["ours"]
                                                                  / rows["train_flops_per_image"]["mae"])
    return rows


PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--profile", default="cpu", help="model size row of MCM_PROFILES for the CPU comparison")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU comparison (GPU part only; needs CUDA)")
    ap.add_argument("--gpu-batch", type=int, default=64, help="GPU batch of ours against the references")
    ap.add_argument("--mfu-batch", type=int, default=256, help="GPU batch of ours alone: MFU and peak memory")
    args = ap.parse_args(argv)
    from au_lib.provenance import atomic_write_json, device_name, git_commit

    if args.no_cpu and not torch.cuda.is_available():
        raise SystemExit("bench_mcm: --no-cpu leaves only the GPU part, but CUDA is not available")
    for name in ("batch", "gpu_batch", "mfu_batch", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"bench_mcm: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    results = {"commit": git_commit(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if not args.no_cpu:
        cfg = MCM_PROFILES[args.profile]
        cpu = torch.device("cpu")
        r = bench_size(cfg, args.batch, cpu, args.repeats, args.warmup)
        results["cpu"] = {"device": device_name(cpu), "profile": args.profile, "batch": args.batch, **r}
        print(f"CPU ({device_name(cpu)}), {args.profile} size, batch {args.batch}, mask 0.5, train step images/s:")
        for k in ("mae", "mae3", "ours"):
            print(f"  {k:5s} {r[k]['images_per_s']:8.1f}")
        print(f"  ours / plain MAE (1 decoder): {r['ratio_vs_mae']:.2f}x   "
              f"ours / MAE-style MCM (3 decoders): {r['ratio_vs_mae3']:.2f}x")
        fl = r["train_flops_per_image"]
        print(f"  ours does {fl['ours'] / fl['mae']:.2f}x the plain MAE's FLOPs per image; "
              f"FLOP rate ours / plain MAE: {r['flop_rate_ratio_vs_mae']:.2f}x")
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        name = torch.cuda.get_device_name(dev)
        paper = MCM_PROFILES["paper"]
        # same batch: references eager fp32, ours bf16 + SDPA + torch.compile (the GPU target: >= 1.5x)
        g = bench_size(paper, args.gpu_batch, dev, args.repeats, args.warmup, compile_ours=True, amp=True,
                       with_refs=True)
        # ours alone at the MFU batch: MFU and peak memory (the same run when the batches are equal)
        g_amp = g if args.mfu_batch == args.gpu_batch else bench_size(
            paper, args.mfu_batch, dev, args.repeats, args.warmup, compile_ours=True, amp=True, with_refs=False)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        flops = mcm_train_flops_per_image(paper)
        ips = g_amp["ours"]["images_per_s"]
        results["gpu"] = {"device": name, "gpu_batch": args.gpu_batch, "mfu_batch": args.mfu_batch,
                          "refs_fp32_ours_bf16_compile": g, "ours_bf16_compile_mfu_batch": g_amp,
                          "train_flops_per_image": flops, "peak_bf16_flops": peak,
                          "mfu": flops * ips / peak if peak else None}
        print(f"GPU {name}, ViT-B/16 224, batch {args.gpu_batch}: mae (fp32 eager) {g['mae']['images_per_s']:.0f}, "
              f"mae3 (fp32 eager) {g['mae3']['images_per_s']:.0f}, ours (bf16+SDPA+compile) "
              f"{g['ours']['images_per_s']:.0f} img/s: ours/mae3 {g['ratio_vs_mae3']:.2f}x (target >= 1.5); "
              f"ours bf16+SDPA+compile batch {args.mfu_batch}: {ips:.0f} img/s, "
              f"peak {g_amp['ours']['peak_mem_gib']:.1f} GiB"
              + (f", MFU {flops * ips / peak:.1%}" if peak else ", MFU unknown (no bf16 peak for this device)"))
    if args.out:
        path = atomic_write_json(Path(args.out) / "bench_mcm.json", results)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
