"""Self-attention that torch-pruning can remove whole heads from.

``nn.MultiheadAttention`` ties its inner width (heads x head_dim) to its input width, so heads
cannot be removed from it while the embedding width stays. ``FusedSelfAttention`` computes the
same function with a fused ``qkv`` Linear and an output ``proj`` Linear (the layout torch-pruning's
head pruning understands); torchvision ViT blocks are converted to it before pruning.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FusedSelfAttention(nn.Module):
    """Drop-in for a batch-first ``nn.MultiheadAttention`` used as self-attention."""

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        # Fixed at construction so that shrinking head_dim later does not change the softmax scale.
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(embed_dim, 3 * num_heads * head_dim, bias=bias)
        self.proj = nn.Linear(num_heads * head_dim, embed_dim, bias=bias)

    def forward(self, query, key=None, value=None, need_weights: bool = False, **unused):
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise NotImplementedError("FusedSelfAttention only computes self-attention (query is key is value)")
        if need_weights:
            raise NotImplementedError("FusedSelfAttention does not return attention weights")
        batch, tokens, _ = query.shape
        qkv = self.qkv(query).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             scale=self.scale)
        out = out.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim)
        return self.proj(out), None

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "FusedSelfAttention":
        new = cls(mha.embed_dim, mha.num_heads, mha.head_dim, bias=mha.in_proj_bias is not None,
                  dropout=mha.dropout)
        with torch.no_grad():
            # in_proj_weight rows are [q; k; v], each head-major: the layout the qkv reshape above expects.
            new.qkv.weight.copy_(mha.in_proj_weight)
            new.proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                new.qkv.bias.copy_(mha.in_proj_bias)
                new.proj.bias.copy_(mha.out_proj.bias)
        return new.to(mha.in_proj_weight.device)


def _convertible(mha: nn.MultiheadAttention) -> bool:
    return (mha.batch_first and mha._qkv_same_embed_dim and mha.bias_k is None and not mha.add_zero_attn
            and mha.in_proj_weight is not None)


def convert_attention(model: nn.Module) -> int:
    """Replace every convertible nn.MultiheadAttention in ``model``; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention) and _convertible(child):
                setattr(parent, name, FusedSelfAttention.from_mha(child).train(child.training))
                replaced += 1
    return replaced


def _timm_attention_class():
    """timm's ViT attention (fused ``qkv`` + ``proj``, ``num_heads``/``head_dim``/``attn_dim``), if timm is here."""
    import sys

    layers = sys.modules.get("timm.layers")  # a timm model in memory means timm is imported
    return getattr(layers, "Attention", None) if layers is not None else None


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Self-attention whose heads torch-pruning can remove: ours (converted torchvision ViTs) and timm's."""
    kinds = tuple(k for k in (FusedSelfAttention, _timm_attention_class()) if k is not None)
    return [m for m in model.modules() if isinstance(m, kinds)]


def head_counts(model: nn.Module) -> list[int]:
    return [m.num_heads for m in attention_modules(model)]


def sync_after_pruning(model: nn.Module, num_heads: dict) -> None:
    """Write the pruned shapes back into the attributes the forward passes read."""
    from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

    for attn in attention_modules(model):
        attn.num_heads = num_heads.get(attn.qkv, attn.num_heads)
        attn.head_dim = attn.qkv.out_features // (3 * attn.num_heads)
        if hasattr(attn, "attn_dim"):  # timm
            attn.attn_dim = attn.num_heads * attn.head_dim
    for module in model.modules():
        if isinstance(module, EncoderBlock) and isinstance(module.self_attention, FusedSelfAttention):
            module.num_heads = module.self_attention.num_heads
        elif isinstance(module, VisionTransformer):
            module.hidden_dim = module.class_token.shape[-1]
