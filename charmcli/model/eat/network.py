"""EAT's network: a Deformable Attention Transformer (DAT, Xia et al. 2022) with EAT's changes.

Written from the paper and the official code (woshidandan/Image-Aesthetics-Assessment, Apache-2.0)
as a reading, not a copy. Module and parameter names follow the official state dict so the
authors' ``torch.save(model.state_dict())`` files load strictly.

The layout, in (B, C, H, W) like the official code (the deformable block's offset path has a
hard sign switch, so its arithmetic stays in the same shapes and ops as the reference):

* stem: a stride-4 convolution + LayerNorm over channels;
* four stages of pre-norm blocks, ``x + attn(LN(x))`` then ``x + MLP(LN(x))``, with a stride-2
  convolution + LayerNorm between stages; ``stage_spec`` letters pick the attention:
  ``L`` 7x7 windows with a relative-position bias, ``S`` the same on a rolled map, ``D`` deformable;
* head: LayerNorm, global average pool, Linear.

EAT changes two things inside ``D`` (see :class:`DeformableAttention`): the reference points are
learned from the input instead of a fixed grid, and offsets that disagree in sign with their
reference point are damped to a quarter. The official code averages the learned reference map
over the batch, which makes a photo's score depend on its batch neighbours; here every image gets
its own map (what it would get in a batch of one) unless ``batch_mean_reference`` is set to
reproduce the official batched behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Depthwise kernel of the offset network, by stage index (as in DAT).
OFFSET_KERNELS = (9, 7, 5, 3)


@dataclass(frozen=True)
class DatConfig:
    """The architecture: the ``MODEL.DAT`` fields of an official YAML config (defaults: dat_base)."""

    img_size: int = 224
    patch_size: int = 4
    num_classes: int = 10
    expansion: int = 4
    dim_stem: int = 128
    dims: tuple[int, ...] = (128, 256, 512, 1024)
    depths: tuple[int, ...] = (2, 2, 18, 2)
    stage_spec: tuple[tuple[str, ...], ...] = (
        ("L", "S"),
        ("L", "S"),
        ("L", "D") * 9,
        ("L", "D"),
    )
    heads: tuple[int, ...] = (4, 8, 16, 32)
    window_sizes: tuple[int, ...] = (7, 7, 7, 7)
    groups: tuple[int, ...] = (-1, -1, 4, 8)
    use_pes: tuple[bool, ...] = (False, False, True, True)
    dwc_pes: tuple[bool, ...] = (False, False, False, False)
    strides: tuple[int, ...] = (-1, -1, 1, 1)
    offset_range_factor: tuple[float, ...] = (-1, -1, 2, 2)
    no_offs: tuple[bool, ...] = (False, False, False, False)
    fixed_pes: tuple[bool, ...] = (False, False, False, False)
    use_dwc_mlps: tuple[bool, ...] = (False, False, False, False)
    use_conv_patches: bool = False
    #: training-only fields of the official format, accepted and ignored at inference
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DatConfig:
        """Build from ``MODEL.DAT`` keys; unknown keys are kept in ``extra`` (drop rates, …)."""
        names = {f.name for f in fields(cls)} - {"extra"}
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in values.items():
            if key in names:
                known[key] = _freeze(value)
            else:
                extra[key] = value
        cfg = cls(**known, extra=extra)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The architecture fields as plain JSON-able values (for identity hashes and reports)."""
        return {f.name: _thaw(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}

    def validate(self) -> None:
        """ValueError (one line) for a config the network cannot be built from."""
        per_stage = ("dims", "depths", "stage_spec", "heads", "window_sizes", "groups", "use_pes", "dwc_pes",
                     "strides", "offset_range_factor", "no_offs", "fixed_pes", "use_dwc_mlps")  # fmt: skip
        for name in per_stage:
            if len(getattr(self, name)) != 4:
                raise ValueError(f"arch config: {name} needs 4 entries (one per stage)")
        size = self.img_size // self.patch_size
        for i in range(4):
            spec, depth = self.stage_spec[i], self.depths[i]
            if len(spec) != depth:
                raise ValueError(
                    f"arch config: stage {i} has depth {depth} but {len(spec)} stage_spec letters"
                )
            if bad := set(spec) - {"L", "S", "D"}:
                raise ValueError(f"arch config: unknown stage_spec letter(s) {sorted(bad)} (use L, S, D)")
            if self.dims[i] % self.heads[i]:
                raise ValueError(
                    f"arch config: stage {i} width {self.dims[i]} is not divisible by {self.heads[i]} heads"
                )
            if ("L" in spec or "S" in spec) and size % self.window_sizes[i]:
                raise ValueError(
                    f"arch config: stage {i} map {size}x{size} is not a multiple of window {self.window_sizes[i]}"
                )
            if "D" in spec:
                g = self.groups[i]
                if g <= 0 or self.heads[i] % g or self.dims[i] % g:
                    raise ValueError(f"arch config: stage {i} groups {g} must divide its heads and width")
                if self.fixed_pes[i] and self.use_pes[i]:
                    raise ValueError(
                        "arch config: fixed_pes is not supported (the official code cannot run it)"
                    )
            if i > 0 and self.dims[i - 1] * 2 != self.dims[i]:
                raise ValueError(
                    "arch config: each stage must be twice as wide as the one before (as in DAT)"
                )
            size //= 2


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (the official ``LayerNormProxy``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _MlpChunk(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)


class Mlp(nn.Module):
    """Linear → GELU (erf) → Linear over channels, 4x wide by default."""

    def __init__(self, dim: int, expansion: int) -> None:
        super().__init__()
        self.chunk = _MlpChunk(dim, dim * expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = self.chunk.linear2(F.gelu(self.chunk.linear1(t)))
        return t.transpose(1, 2).reshape(b, c, h, w)


class ConvMlp(nn.Module):
    """The ``use_dwc_mlps`` variant: 1x1 conv → 3x3 depthwise conv → GELU → 1x1 conv."""

    def __init__(self, dim: int, expansion: int) -> None:
        super().__init__()
        hidden = dim * expansion
        self.linear1 = nn.Conv2d(dim, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.linear2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.gelu(self.dwc(self.linear1(x))))


def relative_index(window: int) -> torch.Tensor:
    """(w², w²) index into a (2w-1)² bias table: row offset major, column offset minor."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def shift_mask(size: int, window: int, shift: int) -> torch.Tensor:
    """(windows, w², w²) additive mask of a rolled map: -100 between tokens of different regions.

    After rolling by ``shift``, the last window row/column holds pixels from both ends of the
    map; tokens are labelled by the band they came from (three bands per axis) and may attend
    only within their label.
    """
    band = torch.zeros(size, dtype=torch.long)
    band[size - window :] = 1
    band[size - shift :] = 2
    label = band[:, None] * 3 + band[None, :]  # (H, W)
    n = size // window
    cells = label.reshape(n, window, n, window).permute(0, 2, 1, 3).reshape(n * n, window * window)
    differ = cells[:, None, :] != cells[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, Swin-style bias (``L``)."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.proj_qkv = nn.Linear(dim, 3 * dim)
        self.proj_out = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_index(window))

    def _attend(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, nh = self.window, self.heads
        r1, r2 = h // ws, w // ws
        # (B, C, H, W) -> (B * windows, w², C), windows in row-major order per image
        t = x.reshape(b, c, r1, ws, r2, ws).permute(0, 2, 4, 3, 5, 1).reshape(b * r1 * r2, ws * ws, c)
        q, k, v = self.proj_qkv(t).chunk(3, dim=2)
        q = q * self.scale
        split = lambda z: z.reshape(z.shape[0], ws * ws, nh, c // nh).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(ws * ws, ws * ws, nh).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            n_win = mask.shape[0]
            attn = (attn.reshape(-1, n_win, nh, ws * ws, ws * ws) + mask[None, :, None]).reshape(attn.shape)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(t.shape[0], ws * ws, c)
        out = self.proj_out(out)
        return out.reshape(b, r1, r2, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor, **_: Any) -> tuple[torch.Tensor, None, None]:
        return self._attend(x, None), None, None


class ShiftedWindowAttention(WindowAttention):
    """Window attention on a map rolled by ``ceil(w/2)`` (``S``), masked across the seams."""

    def __init__(self, dim: int, heads: int, window: int, fmap: int) -> None:
        super().__init__(dim, heads, window)
        self.shift = math.ceil(window / 2)
        self.register_buffer("attn_mask", shift_mask(fmap, window, self.shift))

    def forward(self, x: torch.Tensor, **_: Any) -> tuple[torch.Tensor, None, None]:
        s = self.shift
        rolled = torch.roll(x, shifts=(-s, -s), dims=(2, 3))
        return torch.roll(self._attend(rolled, self.attn_mask), shifts=(s, s), dims=(2, 3)), None, None


class DeformableAttention(nn.Module):
    """DAT's deformable attention with EAT's learned reference points and offset damping (``D``).

    Per group of channels, a small conv net predicts an offset field from the queries. EAT
    replaces DAT's fixed reference grid with ``tanh(ref_point14(x))``, one (y, x) map shared by
    every group, and keeps an offset only where both of its components have the same sign as the
    reference point's (product > 0 in float32); elsewhere the offset is scaled by 0.25. Keys and
    values are bilinear samples of the input at reference + offset; the relative-position bias is
    read from ``rpe_table`` at half the query-to-sample displacement.
    """

    def __init__(self, dim: int, heads: int, groups: int, fmap: int, stage: int, stride: int,
                 range_factor: float, use_pe: bool, dwc_pe: bool, no_off: bool) -> None:  # fmt: skip
        super().__init__()
        self.heads, self.groups = heads, groups
        self.head_dim = dim // heads
        self.group_dim = dim // groups
        self.scale = self.head_dim**-0.5
        self.range_factor = range_factor
        self.use_pe, self.dwc_pe, self.no_off = use_pe, dwc_pe, no_off
        k = OFFSET_KERNELS[stage]
        gd = self.group_dim
        self.conv_offset = nn.Sequential(
            nn.Conv2d(gd, gd, k, max(1, stride), k // 2, groups=gd),
            ChannelNorm(gd),
            nn.GELU(),
            nn.Conv2d(gd, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(dim, dim, 1)
        self.proj_k = nn.Conv2d(dim, dim, 1)
        self.proj_v = nn.Conv2d(dim, dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.ref_point14 = nn.Conv2d(dim, 2, 1)
        if use_pe and dwc_pe:
            self.rpe_table: nn.Module | nn.Parameter | None = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        elif use_pe:
            self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * fmap - 1, 2 * fmap - 1))
        else:
            self.rpe_table = None

    def reference_points(self, x: torch.Tensor, batch_mean: bool) -> torch.Tensor:
        """(B or 1, H, W, 2) learned reference points in [-1, 1], (y, x) last."""
        ref = self.ref_point14(x)
        if batch_mean:  # the official behaviour: one map for the whole batch
            ref = ref.mean(dim=0, keepdim=True)
        return ref.permute(0, 2, 3, 1).tanh()

    def forward(
        self, x: torch.Tensor, *, batch_mean: bool = False, trace: dict[str, Any] | None = None, name: str = ""
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        g, gd = self.groups, self.group_dim
        q = self.proj_q(x)
        offset = self.conv_offset(q.reshape(b * g, gd, h, w))  # (B*g, 2, Hk, Wk)
        hk, wk = offset.shape[2:]
        if self.range_factor > 0:
            extent = torch.tensor([1.0 / hk, 1.0 / wk], device=x.device).reshape(1, 2, 1, 1)
            offset = offset.tanh().mul(extent).mul(self.range_factor)
        offset = offset.permute(0, 2, 3, 1)  # (B*g, Hk, Wk, 2), (y, x)
        if self.no_off:
            offset = torch.zeros_like(offset)
        ref = self.reference_points(x, batch_mean)  # (B or 1, Hk, Wk, 2)
        ref = ref.repeat_interleave(g, dim=0) if ref.shape[0] > 1 else ref.expand(b * g, -1, -1, -1)
        if trace is not None:  # the offsets before the sign test, for measuring near-ties
            trace[f"{name}.offset"] = offset.reshape(b, g, hk, wk, 2)
        agree = ((offset * ref) > 0).all(dim=-1, keepdim=True)
        offset = offset * torch.where(agree, 1.0, 0.25).to(offset.dtype)
        pos = offset + ref if self.range_factor >= 0 else (offset + ref).tanh()

        n = hk * wk
        samples = F.grid_sample(x.reshape(b * g, gd, h, w), pos.flip(-1), mode="bilinear", align_corners=True)
        samples = samples.reshape(b, c, 1, n)
        qh = q.reshape(b * self.heads, self.head_dim, h * w)
        kh = self.proj_k(samples).reshape(b * self.heads, self.head_dim, n)
        vh = self.proj_v(samples).reshape(b * self.heads, self.head_dim, n)
        attn = torch.bmm(qh.transpose(1, 2), kh).mul(self.scale)  # (B*heads, HW, n)
        lepe = None
        if isinstance(self.rpe_table, nn.Conv2d):
            lepe = self.rpe_table(q).reshape(b * self.heads, self.head_dim, h * w)
        elif self.rpe_table is not None:
            grid = query_grid(h, w, x.dtype, x.device).reshape(1, h * w, 1, 2)
            shift = (grid - pos.reshape(b * g, 1, n, 2)).mul(0.5)  # (B*g, HW, n, 2)
            table = (
                self.rpe_table[None]
                .expand(b, -1, -1, -1)
                .reshape(b * g, self.heads // g, 2 * h - 1, 2 * w - 1)
            )
            bias = F.grid_sample(table, shift.flip(-1), mode="bilinear", align_corners=True)
            attn = attn + bias.reshape(b * self.heads, h * w, n)
        out = torch.bmm(vh, attn.softmax(dim=2).transpose(1, 2))  # (B*heads, hd, HW)
        if lepe is not None:
            out = out + lepe
        y = self.proj_out(out.reshape(b, c, h, w))
        return y, pos.reshape(b, g, hk, wk, 2), ref.reshape(b, g, hk, wk, 2)


def query_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H, W, 2) pixel centres in [-1, 1] (y, x), computed in the same float steps as DAT."""
    ys = torch.linspace(0.5, h - 0.5, h, dtype=dtype, device=device).div(h).mul(2).sub(1)
    xs = torch.linspace(0.5, w - 0.5, w, dtype=dtype, device=device).div(w).mul(2).sub(1)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gy, gx), dim=-1)


class Stage(nn.Module):
    """One resolution level: ``depth`` pre-norm blocks (attention, then MLP)."""

    def __init__(self, cfg: DatConfig, i: int, fmap: int, dim_in: int) -> None:
        super().__init__()
        dim = cfg.dims[i]
        self.proj = nn.Conv2d(dim_in, dim, 1) if dim_in != dim else nn.Identity()
        depth = cfg.depths[i]
        self.layer_norms = nn.ModuleList(ChannelNorm(dim) for _ in range(2 * depth))
        mlp = ConvMlp if cfg.use_dwc_mlps[i] else Mlp
        self.mlps = nn.ModuleList(mlp(dim, cfg.expansion) for _ in range(depth))
        self.attns = nn.ModuleList()
        for letter in cfg.stage_spec[i]:
            if letter == "L":
                self.attns.append(WindowAttention(dim, cfg.heads[i], cfg.window_sizes[i]))
            elif letter == "S":
                self.attns.append(ShiftedWindowAttention(dim, cfg.heads[i], cfg.window_sizes[i], fmap))
            else:
                self.attns.append(
                    DeformableAttention(
                        dim, cfg.heads[i], cfg.groups[i], fmap, i, cfg.strides[i], cfg.offset_range_factor[i],
                        cfg.use_pes[i], cfg.dwc_pes[i], cfg.no_offs[i],
                    )
                )  # fmt: skip

    def forward(
        self, x: torch.Tensor, batch_mean: bool, trace: dict[str, Any] | None, prefix: str
    ) -> torch.Tensor:
        x = self.proj(x)
        for d, attn in enumerate(self.attns):
            y, pos, ref = attn(
                self.layer_norms[2 * d](x), batch_mean=batch_mean, trace=trace, name=f"{prefix}.attns.{d}"
            )
            x = x + y
            x = x + self.mlps[d](self.layer_norms[2 * d + 1](x))
            if trace is not None and pos is not None:
                trace[f"{prefix}.attns.{d}.pos"] = pos
                trace[f"{prefix}.attns.{d}.ref"] = ref
        return x


class EatNet(nn.Module):
    """DAT backbone + EAT attention + a linear head; returns logits (and, on request, a trace)."""

    def __init__(self, cfg: DatConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stem = (
            nn.Conv2d(3, cfg.dim_stem, 7, cfg.patch_size, 3)
            if cfg.use_conv_patches
            else nn.Conv2d(3, cfg.dim_stem, cfg.patch_size, cfg.patch_size)
        )
        self.patch_proj = nn.Sequential(stem, ChannelNorm(cfg.dim_stem))
        fmap = cfg.img_size // cfg.patch_size
        self.stages = nn.ModuleList()
        for i in range(4):
            dim_in = cfg.dim_stem if i == 0 else cfg.dims[i - 1] * 2
            self.stages.append(Stage(cfg, i, fmap, dim_in))
            fmap //= 2
        self.down_projs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(cfg.dims[i], cfg.dims[i + 1], 3, 2, 1, bias=False)
                if cfg.use_conv_patches
                else nn.Conv2d(cfg.dims[i], cfg.dims[i + 1], 2, 2, bias=False),
                ChannelNorm(cfg.dims[i + 1]),
            )
            for i in range(3)
        )
        self.cls_norm = ChannelNorm(cfg.dims[-1])
        self.cls_head = nn.Linear(cfg.dims[-1], cfg.num_classes)

    def forward_features(
        self, x: torch.Tensor, *, batch_mean_reference: bool = False, trace: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> (B, C) pooled features before the head."""
        x = self.patch_proj(x)
        for i, stage in enumerate(self.stages):
            x = stage(x, batch_mean_reference, trace, f"stages.{i}")
            if i < 3:
                x = self.down_projs[i](x)
        return self.cls_norm(x).mean(dim=(2, 3))

    def forward(
        self, x: torch.Tensor, *, batch_mean_reference: bool = False, trace: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, num_classes) and pooled features (B, C).

        ``batch_mean_reference=True`` reproduces the official code's batch-dependent outputs
        (reference points averaged over the batch); the default scores every image as if alone.
        ``trace`` (a dict) collects each deformable block's sampling positions and references.
        """
        features = self.forward_features(x, batch_mean_reference=batch_mean_reference, trace=trace)
        return self.cls_head(features), features
