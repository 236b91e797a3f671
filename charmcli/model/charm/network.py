"""The Charm network: DINOv2 ViT blocks from timm behind Charm's own embedding and head.

Charm feeds a ViT a sequence of 14 px tokens that the tokenizer already cut (at two scales), so
the usual image-to-patch stem and fixed position table are replaced by:

* a linear projection of each 3x14x14 token (the DINOv2 conv stem, applied per token),
* a learned *scale embedding* (row 0: low-resolution/normal tokens, row 1: high-resolution),
* a CLS token, and position rows that the tokenizer interpolated to the image's own grid.

The encoder is a stack of timm ``Block``s (pre-LayerNorm, LayerScale, exact GELU, eps 1e-6)
exactly as in ``vit_small_patch14_dinov2`` / ``vit_large_patch14_dinov2``; depth, width and heads
come from the checkpoint. The head reads ``[CLS, mean of patch tokens]`` after the final norm.

Sequences of different lengths can share a batch: they are right-padded and a key-padding mask
keeps attention and the mean pooling on real tokens only (scaled-dot-product attention picks a
memory-efficient kernel where the device has one).

Reduced precision (:meth:`CharmViT.set_precision`) moves only the four matrix products of each
block and attention to bf16/fp16, where the hardware's speed is; the residual stream, the
LayerNorms, the layer scales, the embedding and the head stay fp32, which costs almost nothing
(see docs/speed.md for what that buys in fidelity and speed).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from charmcli.model.charm.activations import build_activation
from charmcli.model.charm.checkpoint import NetworkConfig


class CharmViT(nn.Module):
    """Charm's ViT; ``forward`` returns (logits, features) where features = head input."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embed = nn.Conv2d(3, d, kernel_size=14, stride=14)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))  # kept for checkpoint fidelity; unused
        self.scale_embed = nn.Parameter(torch.zeros(cfg.num_scales, d))
        norm = partial(nn.LayerNorm, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(
            Block(
                dim=d,
                num_heads=cfg.heads,
                mlp_ratio=cfg.mlp_hidden / d,
                qkv_bias=True,
                init_values=1.0,
                norm_layer=norm,
                act_layer=nn.GELU,
            )
            for _ in range(cfg.depth)
        )
        self.norm = norm(d)
        self.head = nn.Linear(2 * d, cfg.num_classes)
        self.head_activation = build_activation(cfg.activation, cfg.activation_args)
        self.low_dtype: torch.dtype | None = None  # the blocks' matrix-product dtype (None: fp32)
        self.inference_ready = False  # set_precision() folded the layer scales: the fast block runs
        self._fused_gelu = False  # oneDNN runs fc1 and GELU as one kernel on this device and dtype

    def set_precision(self, precision: str) -> CharmViT:
        """Ready the network for inference in ``fp32``, ``bf16`` or ``fp16`` (call once, after
        moving it to its device).

        The layer scales are folded into the products before them (``proj``, ``fc2``: ``W, b``
        times ``gamma``; ``gamma`` becomes 1), which the fast block needs: the function is the
        same, the rounding differs by about 1e-7. In ``bf16`` / ``fp16`` the four ``Linear``
        layers of every block are then converted in place (no fp32 copy is kept); LayerNorms,
        the residual stream, the embedding and the head stay fp32.
        """
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        with torch.no_grad():
            for block in self.blocks:
                for linear, scale in ((block.attn.proj, block.ls1), (block.mlp.fc2, block.ls2)):
                    gamma = scale.gamma.to(linear.weight.dtype)
                    linear.weight.mul_(gamma[:, None])
                    linear.bias.mul_(gamma)
                    scale.gamma.fill_(1.0)
                for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
                    linear.to(dtype)
        self.low_dtype = None if dtype == torch.float32 else dtype
        self.inference_ready = True
        self._fused_gelu = _fused_gelu_works(self.cls_token.device, dtype)
        return self

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.low_dtype]

    def embed(self, tokens: torch.Tensor, pos_embed: torch.Tensor, scale_ids: torch.Tensor) -> torch.Tensor:
        """(B, L, 3, 14, 14) tokens -> (B, L + 1, D) encoder input."""
        b, n = tokens.shape[:2]
        w = self.patch_embed.weight
        # a 14x14 conv with stride 14 on a 14x14 token is one dot product: do it as a matmul
        x = F.linear(tokens.reshape(b, n, -1).to(w.dtype), w.reshape(w.shape[0], -1), self.patch_embed.bias)
        x = x + self.scale_embed[scale_ids]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        return x + pos_embed.to(x.dtype)

    def forward(
        self,
        tokens: torch.Tensor,
        pos_embed: torch.Tensor,
        scale_ids: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch. ``lengths`` (B,) counts real tokens (without CLS) when padded."""
        x = self.embed(tokens, pos_embed, scale_ids)
        attn_mask = None
        valid = None
        if lengths is not None and bool((lengths < tokens.shape[1]).any()):
            valid = torch.arange(tokens.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]
            keys = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)  # CLS is always a key
            attn_mask = keys[:, None, None, :]
        for block in self.blocks:
            x = self._block(block, x, attn_mask) if self.inference_ready else block(x, attn_mask=attn_mask)
        x = self.norm(x)
        patches = x[:, 1:]
        if valid is None:
            pooled = patches.mean(dim=1)
        else:
            weights = valid.to(x.dtype)[..., None]
            pooled = (patches * weights).sum(dim=1) / weights.sum(dim=1)
        features = torch.cat([x[:, 0], pooled], dim=1)
        return self.head(features), features

    def _block(self, block: Block, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """timm's ``Block.forward`` with the layer scales folded away, fc1 + GELU fused where
        oneDNN can, the products in ``low_dtype`` and the residual stream always in fp32."""
        low = self.low_dtype
        attn, mlp = block.attn, block.mlp
        b, n, d = x.shape
        h = block.norm1(x)
        qkv = attn.qkv(h if low is None else h.to(low)).reshape(b, n, 3, attn.num_heads, attn.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(b, n, d)
        x = x + attn.proj(a)  # fp32 + low: the sum is fp32, without a separate cast
        h = block.norm2(x)
        h = h if low is None else h.to(low)
        if self._fused_gelu:
            h = torch.ops.mkldnn._linear_pointwise(h, mlp.fc1.weight, mlp.fc1.bias, "gelu", [], "none")
        else:
            h = mlp.act(mlp.fc1(h))
        return x + mlp.fc2(h)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's activation as the checkpoint defines it (Sigmoid, Softmax, ReLU, …), in fp32."""
        return self.head_activation(logits.float())


def _fused_gelu_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether oneDNN's linear with an exact-GELU post-op runs here and matches the two-step
    ``gelu(linear(x))`` (it saves the separate GELU pass: 5-7 % of a forward). CPU only; an
    old CPU without bf16 support in oneDNN, or a torch built without it, falls back."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*shape, generator=g).to(dtype) for shape in ((2, 5, 32), (48, 32), (48,)))
        with torch.inference_mode():
            fused = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
            plain = F.gelu(F.linear(x, w, b))
        tol = 1e-5 if dtype == torch.float32 else 5e-2
        return fused.dtype == dtype and bool(torch.allclose(fused.float(), plain.float(), atol=tol, rtol=tol))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
