"""AU classifiers: heads, masked weighted BCE, baselines, MCM fusion wrapper."""

import numpy as np
import pytest
import torch

from au_lib.metrics import class_weights, f1_per_au
from au_lib.models.heads import EncoderClassifier, LinearProbe, SubsetFusion, masked_bce_loss


def _labels(rng, n=200, a=5, unknown=0.1):
    lab = (rng.random((n, a)) < np.linspace(0.1, 0.6, a)).astype(float)
    lab[rng.random((n, a)) < unknown] = -1
    return lab


def test_f1_matches_sklearn_with_unknown_masked():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    lab = _labels(rng)
    scores = rng.random(lab.shape)
    res = f1_per_au(lab, scores, 0.5)
    for i in range(lab.shape[1]):
        k = lab[:, i] >= 0
        assert res.per_au[i] == pytest.approx(f1_score(lab[k, i], scores[k, i] >= 0.5, zero_division=0))


def test_class_weights_are_normalised_sklearn_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    rng = np.random.default_rng(1)
    lab = _labels(rng)
    w = class_weights(lab)
    pos_w = np.array([compute_class_weight("balanced", classes=np.array([0.0, 1.0]), y=lab[lab[:, i] >= 0, i])[1]
                      for i in range(lab.shape[1])])  # n / (2 * pos) = 1 / (2 r_i)
    np.testing.assert_allclose(w, pos_w / pos_w.sum() * len(pos_w), rtol=1e-10)
    assert w.mean() == pytest.approx(1.0)


def test_masked_bce_matches_manual_and_ignores_unknown():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, dtype=torch.double, requires_grad=True)
    labels = torch.tensor([[1, 0, -1], [0, 0, 1], [9, 1, 0], [1, 1, 1], [0, -1, 0], [1, 0, 0]], dtype=torch.double)
    w = torch.tensor([0.5, 1.0, 1.5], dtype=torch.double)
    loss = masked_bce_loss(logits, labels, w)
    known = (labels == 0) | (labels == 1)
    p = torch.sigmoid(logits)
    t = (labels == 1).double()
    manual = -(w * (t * p.log() + (1 - t) * (1 - p).log()))[known].sum() / known.sum()
    assert float(loss.detach()) == pytest.approx(float(manual.detach()), rel=1e-10)
    loss.backward()
    assert torch.all(logits.grad[~known] == 0)
    assert torch.autograd.gradcheck(lambda z: masked_bce_loss(z, labels, w), (logits.detach().requires_grad_(),))


def test_masked_bce_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        masked_bce_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="weights must have shape"):
        masked_bce_loss(torch.zeros(2, 3), torch.zeros(2, 3), [1.0, 1.0])


def test_linear_probe_shape_and_error():
    probe = LinearProbe(16, 12)
    assert probe(torch.randn(4, 16)).shape == (4, 12)
    with pytest.raises(ValueError, match=r"expects \(B, 16\)"):
        probe(torch.randn(4, 8))


@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_baselines_forward_features(name):
    from au_lib.models.baselines import create_baseline

    enc = create_baseline(name, 32, profile="smoke")
    model = EncoderClassifier(enc, enc.num_features, 12)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 12)
    groups = model.param_groups(1e-3, 0.05, 0.5)
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())
    if name == "vit":  # layer decay: the earliest layers learn slowest
        assert min(g["lr"] for g in groups) < 1e-3 * 0.5
    with pytest.raises(KeyError, match="unknown baseline"):
        create_baseline("alexnet", 32)


def _mcm_encoder():
    mcm = pytest.importorskip("au_lib.models.mcm")
    torch.manual_seed(0)
    return mcm.MCMEncoder(mcm.MCM_PROFILES["smoke"]).eval()


def test_subset_fusion_rgb_equals_encoder_and_averages():
    enc = _mcm_encoder()
    x5 = torch.rand(3, 5, 32, 32)
    with torch.no_grad():
        rgb = SubsetFusion(enc, ("RGB",)).eval().forward_features(x5)
        np.testing.assert_allclose(rgb.numpy(), enc.forward_features(x5[:, :3]).numpy(), atol=1e-6)
        fused = SubsetFusion(enc, ("RGB", "RDT")).eval().forward_features(x5)
        rdt = enc.forward_features(x5[:, [0, 3, 4]], subset="RDT")
        np.testing.assert_allclose(fused.numpy(), ((rgb + rdt) / 2).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        SubsetFusion(enc).forward_features(torch.rand(2, 3, 32, 32))


def test_mcm_classifier_uses_layer_decay():
    enc = _mcm_encoder()
    model = EncoderClassifier(enc, enc.embed_dim, 8)
    groups = model.param_groups(1e-3, 0.05, 0.5)
    lrs = sorted({round(g["lr"], 12) for g in groups})
    assert lrs[-1] == pytest.approx(1e-3) and lrs[0] == pytest.approx(1e-3 * 0.5 ** enc.num_layers)
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad)


def test_subset_fusion_passes_the_token_grid():
    enc = _mcm_encoder()
    x5 = torch.rand(2, 5, 32, 32)
    with torch.no_grad():
        fused = SubsetFusion(enc, ("RGB", "RDT"), grid=2).eval().forward_features(x5)
        rgb = enc.forward_features(x5[:, :3], grid=2)
        rdt = enc.forward_features(x5[:, [0, 3, 4]], subset="RDT", grid=2)
    assert fused.shape == (2, 4 * enc.embed_dim)
    np.testing.assert_allclose(fused.numpy(), ((rgb + rdt) / 2).numpy(), atol=1e-5)
