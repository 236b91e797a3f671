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
            x = block(x, attn_mask=attn_mask)
        x = self.norm(x)
        patches = x[:, 1:]
        if valid is None:
            pooled = patches.mean(dim=1)
        else:
            weights = valid.to(x.dtype)[..., None]
            pooled = (patches * weights).sum(dim=1) / weights.sum(dim=1)
        features = torch.cat([x[:, 0], pooled], dim=1)
        return self.head(features), features

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's activation as the checkpoint defines it (Sigmoid, Softmax, ReLU, …), in fp32."""
        return self.head_activation(logits.float())
