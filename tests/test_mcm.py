"""MCM model and masking: invariants, shapes, loss, errors, timm weight loading, encoder API."""

from __future__ import annotations

import pytest
import torch

from au_lib.experiments.reconstruction import reconstruction_errors
from au_lib.models.mcm import (MCM, MCM_PROFILES, MCMConfig, MCMEncoder, MODALITIES,
                               load_pretrained_encoder, mcm_loss, sincos_pos_embed)
from au_lib.ops.masking import (RGB_SUBSET, SUBSETS, channel_mix, kept_channel_mask, mask_image,
                                num_visible, patchify, random_masking, sample_subsets, subset_index,
                                subset_name, unpatchify)

torch.set_num_threads(1)
SMOKE = MCM_PROFILES["smoke"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- masking
@pytest.mark.parametrize("n,ratio", [(16, 0.5), (196, 0.75), (64, 0.3), (49, 0.0)])
def test_random_masking_exact_count_and_consistency(n, ratio):
    m = random_masking(7, n, ratio, gen(1))
    keep = num_visible(n, ratio)
    assert m.ids_keep.shape == (7, keep)
    assert torch.all(m.mask.sum(1) == n - keep)  # exact number masked in every sample
    # visible ids are exactly the unmasked positions, and ids_restore inverts the shuffle
    for b in range(7):
        assert set(m.ids_keep[b].tolist()) == set((m.mask[b] == 0).nonzero().flatten().tolist())
        assert len(set(m.ids_keep[b].tolist())) == keep
    shuffled = torch.cat([m.ids_keep, torch.full((7, n - keep), -1)], 1)
    restored = torch.gather(shuffled, 1, m.ids_restore)
    vis = m.mask == 0
    assert torch.equal(restored[vis], torch.arange(n).expand(7, -1)[vis])


def test_masking_reproducible_with_seed_and_varies_without():
    a = random_masking(4, 64, 0.5, gen(3))
    b = random_masking(4, 64, 0.5, gen(3))
    c = random_masking(4, 64, 0.5, gen(4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_keep, b.ids_keep)
    assert not torch.equal(a.mask, c.mask)
    assert not torch.equal(a.mask[0], a.mask[1])  # per-sample masks
    assert torch.equal(sample_subsets(50, gen(2)), sample_subsets(50, gen(2)))


def test_bad_mask_ratio():
    with pytest.raises(ValueError, match="mask ratio"):
        random_masking(2, 16, 1.0, gen())


def test_subsets_table_and_channel_mix():
    assert len(SUBSETS) == 10 and len(set(SUBSETS)) == 10
    assert SUBSETS[RGB_SUBSET] == (0, 1, 2) and subset_name(RGB_SUBSET) == "RGB"
    assert subset_index("TDR") == SUBSETS.index((0, 3, 4)) == subset_index(("R", "D", "T"))
    with pytest.raises(ValueError, match="not 3 distinct"):
        subset_index("RG")
    x5 = torch.arange(5.0)[None, :, None, None].expand(10, 5, 4, 4)
    s = torch.arange(10)
    x3 = channel_mix(x5, s)
    kept = kept_channel_mask(s)
    for i in range(10):
        assert x3[i, :, 0, 0].tolist() == list(map(float, SUBSETS[i]))  # kept channels, ascending slots
        assert kept[i].sum() == 3 and kept[i, list(SUBSETS[i])].all()
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        channel_mix(torch.zeros(2, 4, 8, 8), s[:2])


def test_subset_sampling_distribution_and_availability():
    s = sample_subsets(20000, gen(0))
    freq = torch.bincount(s, minlength=10).float() / 20000
    assert torch.allclose(freq, torch.full((10,), 0.1), atol=0.012)  # uniform over the 10 subsets
    probs = [0.0] * 10
    probs[3] = 1.0
    assert torch.all(sample_subsets(100, gen(0), probs) == 3)
    avail = torch.ones(6, 5, dtype=torch.bool)
    avail[:3, 3:] = False  # RGB-only samples
    s = sample_subsets(6, gen(0), available=avail)
    assert torch.all(s[:3] == RGB_SUBSET)
    avail[0, 0] = False
    with pytest.raises(ValueError, match="no drawable subset"):
        sample_subsets(6, gen(0), available=avail)


@pytest.mark.parametrize("c,h,w,p", [(3, 32, 32, 8), (1, 16, 24, 4), (5, 224, 224, 16)])
def test_patchify_round_trip(c, h, w, p):
    x = torch.randn(2, c, h, w)
    t = patchify(x, p)
    assert t.shape == (2, (h // p) * (w // p), p * p * c)
    # patch 0 is the top-left p x p block, flattened (row, col, channel)
    assert torch.equal(t[0, 0], x[0, :, :p, :p].permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(t, p, c, (h // p, w // p)), x)


def test_patchify_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        patchify(torch.zeros(1, 3, 30, 32), 8)


def test_mask_image_paints_masked_patches():
    x = torch.zeros(1, 3, 16, 16)
    m = torch.tensor([[1.0, 0, 0, 1]])
    y = mask_image(x, m, 8, fill=1.0)
    assert y[0, :, :8, :8].eq(1).all() and y[0, :, :8, 8:].eq(0).all() and y[0, :, 8:, 8:].eq(1).all()


# ---------------------------------------------------------------- loss
def test_loss_zero_for_perfect_prediction_and_positive_otherwise():
    x5 = torch.rand(4, 5, 16, 16)
    m = random_masking(4, 4, 0.5, gen()).mask
    kept = kept_channel_mask(torch.tensor([0, 3, 6, 9]))
    avail = torch.ones(4, 5, dtype=torch.bool)
    preds = {"rgb": patchify(x5[:, :3], 8), "depth": patchify(x5[:, 3:4], 8), "thermal": patchify(x5[:, 4:], 8)}
    for norm in (False, True):
        p2 = preds
        if norm:
            p2 = {k: (v - v.mean(-1, keepdim=True)) / (v.var(-1, keepdim=True) + 1e-6) ** 0.5 for k, v in preds.items()}
        total, losses, _ = mcm_loss(p2, x5, m, kept, avail, 8, norm)
        assert float(total) < 1e-10
    bad = {k: v + 0.1 for k, v in preds.items()}
    total, losses, counts = mcm_loss(bad, x5, m, kept, avail, 8)
    assert all(abs(float(losses[k]) - 0.01) < 1e-6 for k in MODALITIES)
    assert abs(float(total) - 0.03) < 1e-6


def test_loss_counts_masked_patches_and_dropped_channels():
    b, n = 1, 4
    x5 = torch.rand(b, 5, 16, 16)
    mask = torch.tensor([[1.0, 1, 0, 0]])
    kept = kept_channel_mask(torch.tensor([subset_index("RGD")]))  # B and T dropped
    avail = torch.ones(b, 5, dtype=torch.bool)
    preds = {"rgb": torch.zeros(1, n, 192), "depth": torch.zeros(1, n, 64), "thermal": torch.zeros(1, n, 64)}
    _, losses, counts = mcm_loss(preds, x5, mask, kept, avail, 8)
    assert float(counts["rgb"]) == 2 * 2 + 4  # masked patches x kept R,G + every patch of dropped B
    assert float(counts["depth"]) == 2  # kept: masked patches only
    assert float(counts["thermal"]) == 4  # dropped: every patch
    _, _, counts = mcm_loss(preds, x5, mask, kept_channel_mask(torch.tensor([RGB_SUBSET])), avail, 8)
    assert [float(counts[m]) for m in MODALITIES] == [6, 4, 4]
    # error only from those places
    t = patchify(x5[:, 4:], 8) ** 2
    assert torch.isclose(losses["thermal"], t.mean())


def test_loss_skips_missing_modalities():
    cfg = SMOKE
    model = MCM(cfg)
    x5 = torch.rand(4, 5, 32, 32)
    x5[:, 3:] = float("nan")  # garbage where the modality is missing must not leak into the loss
    avail = torch.zeros(4, 5, dtype=torch.bool)
    avail[:, :3] = True
    out = model(torch.nan_to_num(x5, 0.0), avail, generator=gen())
    assert torch.all(out.subset_idx == RGB_SUBSET)
    assert torch.isnan(out.losses["depth"]) and torch.isnan(out.losses["thermal"])
    assert torch.isfinite(out.loss) and torch.isclose(out.loss, out.losses["rgb"])
    out.loss.backward()
    assert model.decoders["rgb"].decoder_pred.weight.grad.abs().sum() > 0
    assert model.decoders["depth"].decoder_pred.weight.grad.abs().sum() == 0


# ---------------------------------------------------------------- model
def test_forward_shapes_and_reproducibility():
    model = MCM(SMOKE)
    x5 = torch.rand(3, 5, 32, 32)
    a = model(x5, generator=gen(5))
    b = model(x5, generator=gen(5))
    assert a.preds["rgb"].shape == (3, 16, 8 * 8 * 3) and a.preds["depth"].shape == (3, 16, 64)
    assert a.x3.shape == (3, 3, 32, 32) and a.mask.shape == (3, 16)
    assert torch.all(a.mask.sum(1) == 8)  # 50 % of 16
    assert torch.equal(a.loss, b.loss) and torch.equal(a.subset_idx, b.subset_idx)
    imgs = model.reconstruct(x5, generator=gen(5))
    assert imgs["rgb"].shape == (3, 3, 32, 32) and imgs["thermal"].shape == (3, 1, 32, 32)
    errs = reconstruction_errors(model, x5, a.subset_idx, random_masking(3, 16, 0.5, gen(5)))
    assert all(e.shape == (3,) and torch.isfinite(e).all() for e in errs.values())


def test_bad_inputs_give_clear_errors():
    model = MCM(SMOKE)
    with pytest.raises(ValueError, match="5 channels"):
        model(torch.rand(2, 3, 32, 32), generator=gen())
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        model(torch.rand(2, 5, 30, 30), generator=gen())
    with pytest.raises(ValueError, match="expects 32x32"):
        model.encoder.forward_features(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="3 channels"):
        model.encoder.forward_features(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        MCMConfig(img_size=30, patch_size=8)


def test_few_steps_reduce_loss_on_fixed_batch():
    torch.manual_seed(0)
    model = MCM(SMOKE)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95))
    x5 = torch.rand(8, 5, 32, 32)
    s, m = model.draw(8, gen(1))
    first = None
    for _ in range(30):
        out = model(x5, subset_idx=s, spatial_mask=m)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = float(out.loss.detach()) if first is None else first
    assert float(out.loss.detach()) < 0.5 * first


def test_subset_embedding_tells_encoder_the_channels():
    enc = MCMEncoder(SMOKE)
    x = torch.rand(2, 3, 32, 32)
    a, b = enc.forward_features(x), enc.forward_features(x, "RDT")
    assert a.shape == (2, SMOKE.embed_dim) and not torch.allclose(a, b)
    blind = MCMEncoder(MCMConfig(**{**SMOKE.to_dict(), "subset_embedding": False,
                                    "channel_mean": (0.5,) * 5, "channel_std": (0.25,) * 5}))
    assert blind.subset_embed is None
    assert torch.allclose(blind.forward_features(x), blind.forward_features(x, "RDT"))
    assert enc.forward_tokens(x).shape == (2, 1 + 16, SMOKE.embed_dim)


def test_sincos_matches_mae_numpy_reference():
    np = pytest.importorskip("numpy")

    def ref(d, grid_size):  # facebookresearch/mae util/pos_embed.py
        grid_h = np.arange(grid_size, dtype=np.float32)
        grid_w = np.arange(grid_size, dtype=np.float32)
        grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])

        def one(dim, pos):
            omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)

        emb = np.concatenate([one(d // 2, grid[0]), one(d // 2, grid[1])], axis=1)
        return np.concatenate([np.zeros([1, d]), emb], axis=0)

    assert torch.allclose(sincos_pos_embed(64, 5)[0], torch.from_numpy(ref(64, 5)).float(), atol=1e-6)


def test_timm_vit_state_dict_loads_into_encoder():
    timm = pytest.importorskip("timm")
    cfg = MCMConfig(img_size=32, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                    decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, subset_embedding=False,
                    channel_mean=(0.5,) * 5, channel_std=(0.5,) * 5)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32,
                            num_classes=0).eval()
    enc = MCMEncoder(cfg).eval()
    info = enc.load_timm_state_dict(vit.state_dict())
    assert info["missing"] == []
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = enc.forward_tokens(x)
        theirs = vit.forward_features((x - 0.5) / 0.5)
    assert torch.allclose(ours, theirs, atol=1e-5)
    # a 224-px timm ViT-B/16-style dict is resampled to a different grid
    big = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2).state_dict()
    info = enc.load_timm_state_dict(big)
    assert "head.weight" in info["ignored"]
    with pytest.raises(ValueError, match="lacks"):
        enc.load_timm_state_dict(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=3).state_dict())


def test_paper_encoder_accepts_vit_base_state_dict():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        sd = timm.create_model("vit_base_patch16_224", pretrained=False).state_dict()
        enc = MCMEncoder(MCM_PROFILES["paper"])
    own = enc.state_dict()
    shared = [k for k in sd if k in own]
    assert len(shared) == len(sd) - 2  # all but head.weight/head.bias
    assert all(own[k].shape == sd[k].shape for k in shared)


def test_layer_decay_groups_and_checkpoint_loading(tmp_path):
    model = MCM(SMOKE)
    groups = model.encoder.param_groups_lrd(0.05, 0.5)
    L = model.encoder.num_layers
    assert L == SMOKE.depth + 1
    names = {id(p): n for n, p in model.encoder.named_parameters()}
    by_name = {names[id(p)]: g for g in groups for p in g["params"]}
    # MAE's layer-wise decay: embeddings 0.5**L, block i 0.5**(L-1-i), the final norm the full lr
    assert by_name["patch_embed.proj.weight"]["lr_scale"] == 0.5 ** L
    assert by_name["blocks.0.attn.qkv.weight"]["lr_scale"] == 0.5 ** (L - 1)
    assert by_name[f"blocks.{SMOKE.depth - 1}.mlp.fc1.weight"]["lr_scale"] == 0.5
    assert by_name["norm.weight"]["lr_scale"] == 1.0 and by_name["norm.weight"]["weight_decay"] == 0
    assert by_name["cls_token"]["weight_decay"] == 0 and by_name["blocks.1.mlp.fc1.weight"]["weight_decay"] == 0.05
    # pre-training groups: no decay for the tokens and the subset embedding, decay for the decoder weights
    from au_lib.train.pretrain import param_groups
    wd = {id(p): g["weight_decay"] for g in param_groups(model, 0.05) for p in g["params"]}
    named = dict(model.named_parameters())
    assert wd[id(named["encoder.subset_embed.weight"])] == 0 and wd[id(named["decoders.rgb.mask_token"])] == 0
    assert wd[id(named["decoders.rgb.decoder_embed.weight"])] == 0.05
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": {"model": SMOKE.to_dict()}}, path)
    enc = load_pretrained_encoder(path, drop_path=0.1)
    x = torch.rand(2, 3, 32, 32)
    enc.eval()
    model.encoder.eval()
    assert torch.allclose(enc.forward_features(x), model.encoder.forward_features(x))
    with pytest.raises(FileNotFoundError, match="no MCM checkpoint"):
        load_pretrained_encoder(tmp_path / "missing.pt")


def test_grid_features_pool_tokens_by_face_region():
    """grid=1 is the global mean; grid=g averages the token map over g x g cells (channel-major);
    grid = patches per side returns every token; a grid finer than the patches is refused."""
    torch.manual_seed(0)
    enc = MCMEncoder(SMOKE).eval()   # 32 px, 8 px patches: a 4 x 4 token map
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tok = enc.forward_tokens(x)[:, 1:]                         # (2, 16, D), row-major patches
        D = SMOKE.embed_dim
        assert torch.allclose(enc.forward_features(x, grid=1), tok.mean(1))
        g2 = enc.forward_features(x, grid=2).view(2, D, 2, 2)
        fmap = tok.view(2, 4, 4, D)
        top_left = fmap[:, :2, :2].mean((1, 2))                   # patches (0,0),(0,1),(1,0),(1,1)
        bottom_right = fmap[:, 2:, 2:].mean((1, 2))
        assert torch.allclose(g2[:, :, 0, 0], top_left, atol=1e-6)
        assert torch.allclose(g2[:, :, 1, 1], bottom_right, atol=1e-6)
        full = enc.forward_features(x, grid=4)
        assert full.shape == (2, 16 * D) and torch.allclose(full.view(2, D, 16).transpose(1, 2), tok, atol=1e-6)
        # the grid of pooled cells averages back to the global mean
        assert torch.allclose(g2.mean((2, 3)), enc.forward_features(x), atol=1e-6)
    with pytest.raises(ValueError, match="between 1 and the 4 patches per side"):
        enc.forward_features(x, grid=5)
