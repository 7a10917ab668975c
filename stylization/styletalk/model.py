"""StyleTalk's generator: phoneme windows + a style clip's expressions -> 64-d expressions.

In the released layout (``styletalk_checkpoint.pth``'s ``model_state_dict``: ``content_encoder.*``,
``style_encoder.*``, ``decoder.*``; ``tests/manifests/styletalk_generator.tsv``), so the released
file loads strictly (:func:`stylization.loading.load_official` kind ``styletalk``). Numerics follow
the official modules (FuxiVirtualHuman/styletalk ``core/networks``):

* every transformer is post-LN (PyTorch's ``TransformerEncoderLayer`` order: attention, add, norm,
  FFN, add, norm), sequence-first, with the sinusoid position table added once to the stack's
  input, not per layer; attention never sees the positions again;
* :class:`ContentEncoder`: phoneme indices [B, N, 11] -> Embedding(41, 128) -> Linear 256 -> 3
  layers -> [B, N, 11, 256];
* :class:`StyleEncoder`: expressions [B, L <= 256, 64] (and a padding mask) -> Linear 256 -> 3
  layers -> :class:`AttentionPooling` -> [B, 256];
* :class:`DisentangleDecoder`: per output frame, 11 queries (zeros + positions + the style code)
  attend to that frame's content window through 3 :class:`DynamicDecoderLayer` s, whose first FFN
  layer is a :class:`DynamicLinear` (K kernels mixed by softmax(attention(style) / 30)); the
  centre query's output goes through a 3-layer MLP. Separate upper-face (51 coefficients) and
  lower-face (13, :data:`LOWER_FACE`) stacks.

Pure ``nn.Module`` s; no file I/O.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylization.data.phonemes import WINDOW  # phonemes per output frame: the frame and 5 either side

N_PHONEMES = 41
LOWER_FACE = (0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 14)  # expression indices of the mouth stack
UPPER_FACE = tuple(i for i in range(64) if i not in LOWER_FACE)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """[1, length, dim] float32: sin on even, cos on odd channels of pos / 10000^(2(j // 2) / dim)."""
    position = np.arange(length)[:, None].astype(np.float64)
    rate = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None]
    table = position / rate
    table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
    return torch.from_numpy(table).float()[None]


class PositionTable(nn.Module):
    """The fixed sinusoid table as a persistent buffer ``pos_table`` [1, L, d] (it is in the released
    file); ``forward(n)`` -> [n, 1, d] for sequence-first inputs."""

    def __init__(self, dim: int, length: int):
        super().__init__()
        self.register_buffer("pos_table", sinusoid_table(length, dim))

    def forward(self, n: int) -> torch.Tensor:
        if n > self.pos_table.shape[1]:
            raise ValueError(f"at most {self.pos_table.shape[1]} positions, got {n}")
        return self.pos_table[0, :n, None]


class Encoder(nn.Module):
    """``layers``: post-LN encoder layers; input [L, B, d] + positions [L, 1, d] (added once)."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="relu")
                                    for _ in range(layers))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + pos
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad_mask)
        return x


class ContentEncoder(nn.Module):
    """Phoneme windows [B, N, W] (int, 0..40) -> content [B, N, W, d]."""

    def __init__(self, dim: int = 256, heads: int = 8, ffn: int = 1024, layers: int = 3, dropout: float = 0.1,
                 window: int = WINDOW, embed_dim: int = 128):
        super().__init__()
        self.encoder = Encoder(dim, heads, ffn, layers, dropout)
        self.pos_embed = PositionTable(dim, window)
        self.ph_embedding = nn.Embedding(N_PHONEMES, embed_dim)
        self.increase_embed_dim = nn.Linear(embed_dim, dim)

    def forward(self, phonemes: torch.Tensor) -> torch.Tensor:
        b, n, w = phonemes.shape
        x = self.increase_embed_dim(self.ph_embedding(phonemes)).reshape(b * n, w, -1).transpose(0, 1)
        return self.encoder(x, self.pos_embed(w)).transpose(0, 1).reshape(b, n, w, -1)


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.mish(x)


class AttentionPooling(nn.Module):
    """``W``: Linear, Mish, Linear(1) scores per frame; padded frames get -1e5; softmax over time;
    the weighted sum of the frames. [B, L, d] (+ mask [B, L], True = padding) -> [B, d]."""

    def __init__(self, dim: int):
        super().__init__()
        self.W = nn.Sequential(nn.Linear(dim, dim), Mish(), nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.W(x).squeeze(-1)
        if pad_mask is not None:
            logits = logits + pad_mask.to(x.dtype) * -100000.0
        return (x * logits.softmax(-1)[..., None]).sum(1)


class StyleEncoder(nn.Module):
    """A style clip's expressions [B, L, 64] (L <= ``max_frames``; ``pad_mask`` [B, L], True where
    padded) -> style code [B, d]."""

    def __init__(self, dim: int = 256, heads: int = 8, ffn: int = 1024, layers: int = 3, dropout: float = 0.1,
                 max_frames: int = 256, input_dim: int = 64):
        super().__init__()
        self.encoder = Encoder(dim, heads, ffn, layers, dropout)
        self.pos_embed = PositionTable(dim, max_frames)
        self.increase_embed_dim = nn.Linear(input_dim, dim)
        self.aggregate_method = AttentionPooling(dim)

    def forward(self, exp: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.increase_embed_dim(exp).transpose(0, 1)
        x = self.encoder(x, self.pos_embed(x.shape[0]), pad_mask)
        return self.aggregate_method(x.transpose(0, 1), pad_mask)


class KernelAttention(nn.Module):
    """``net``: 1x1 convolutions cond -> cond / ratio -> ReLU -> K (no biases); softmax(logits / T)."""

    def __init__(self, cond_dim: int, ratio: int, kernels: int, temperature: float = 30.0):
        super().__init__()
        self.temperature = temperature
        self.net = nn.Sequential(nn.Conv2d(cond_dim, cond_dim // ratio, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(cond_dim // ratio, kernels, 1, bias=False))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return (self.net(cond[:, :, None, None]).flatten(1) / self.temperature).softmax(-1)


class DynamicKernels(nn.Module):
    """K candidate linear maps stored as 1x1 convolution kernels (``weight`` [K, out, in, 1, 1],
    ``bias`` [K, out], the released layout) and their mixing attention."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, kernels: int, ratio: int):
        super().__init__()
        self.attention = KernelAttention(cond_dim, ratio, kernels)
        self.weight = nn.Parameter(torch.empty(kernels, out_dim, in_dim, 1, 1))
        self.bias = nn.Parameter(torch.empty(kernels, out_dim))
        bound = 1 / math.sqrt(in_dim)
        for k in range(kernels):
            nn.init.kaiming_uniform_(self.weight[k], a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)


class DynamicLinear(nn.Module):
    """x [L, B·N, in], cond [B, c] -> [L, B·N, out]: rows b·N .. b·N + N - 1 of x (item b's N frames)
    go through item b's linear map sum_k a_k (W_k, b_k), a = softmax(attention(cond) / 30).

    The mixed map is built once per item, not per frame: the same numbers as mixing per row of an
    expanded condition (the official code's), at 1/N of the memory."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, kernels: int = 8, ratio: int = 4):
        super().__init__()
        self.dynamic_conv = DynamicKernels(in_dim, out_dim, cond_dim, kernels, ratio)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        d = self.dynamic_conv
        a = d.attention(cond)  # [B, K]
        weight = torch.einsum("bk,koi->boi", a, d.weight.flatten(2))  # [B, out, in]
        length, rows, width = x.shape
        b = cond.shape[0]
        y = torch.einsum("lbni,boi->lbno", x.reshape(length, b, rows // b, width), weight) + (a @ d.bias)[None, :, None]
        return y.reshape(length, rows, -1)


class DynamicDecoderLayer(nn.Module):
    """Post-LN: self-attention over the queries, cross-attention to the content, FFN whose first
    layer is a :class:`DynamicLinear` conditioned on the style code."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, kernels: int, ratio: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.linear1 = DynamicLinear(dim, ffn, dim, kernels, ratio)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))
        x = self.norm2(x + self.dropout2(self.multihead_attn(x, memory, memory, need_weights=False)[0]))
        return self.norm3(x + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x, style))))))


class DynamicDecoder(nn.Module):
    """``layers`` + a final ``norm``; queries start as positions + style (the target is zeros).

    ``forward(memory [W, B·N, d], pos [W, 1, d], style [B, d])``: N windows per style code."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, dropout: float, kernels: int, ratio: int):
        super().__init__()
        self.layers = nn.ModuleList(DynamicDecoderLayer(dim, heads, ffn, dropout, kernels, ratio)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, memory: torch.Tensor, pos: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = pos + style.repeat_interleave(memory.shape[1] // style.shape[0], 0)[None]  # [W, B*N, d]
        for layer in self.layers:
            x = layer(x, memory, style)
        return self.norm(x)


def _tail(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim // 2), nn.ReLU(),
                         nn.Linear(dim // 2, out))


class DisentangleDecoder(nn.Module):
    """Content [B, N, W, d] + style code [B, d] -> expressions [B, N, 64]: the upper-face and lower-face
    stacks each read the centre query of their window."""

    def __init__(self, dim: int = 256, heads: int = 8, ffn: int = 1024, layers: int = 3, dropout: float = 0.1,
                 window: int = WINDOW, kernels: int = 8, ratio: int = 4, lower: tuple[int, ...] = LOWER_FACE,
                 exp_dim: int = 64):
        super().__init__()
        self.lower = tuple(lower)
        self.upper = tuple(i for i in range(exp_dim) if i not in self.lower)
        self.exp_dim = exp_dim
        self.upper_decoder = DynamicDecoder(dim, heads, ffn, layers, dropout, kernels, ratio)
        self.lower_decoder = DynamicDecoder(dim, heads, ffn, layers, dropout, kernels, ratio)
        self.pos_embed = PositionTable(dim, window)
        self.upper_tail_fc = _tail(dim, len(self.upper))
        self.lower_tail_fc = _tail(dim, len(self.lower))

    def forward(self, content: torch.Tensor, style_code: torch.Tensor) -> torch.Tensor:
        b, n, w, d = content.shape
        memory = content.reshape(b * n, w, d).transpose(0, 1)  # [W, B*N, d]
        pos = self.pos_embed(w)
        out = content.new_zeros(b, n, self.exp_dim)
        for decoder, tail, index in ((self.upper_decoder, self.upper_tail_fc, self.upper),
                                     (self.lower_decoder, self.lower_tail_fc, self.lower)):
            centre = decoder(memory, pos, style_code)[w // 2].reshape(b, n, d)
            out[:, :, list(index)] = tail(centre)
        return out


class StyleTalk(nn.Module):
    """``content_encoder``, ``style_encoder``, ``decoder``; ``forward(phoneme windows [B, N, 11], style
    expressions [B, L, 64], pad_mask [B, L] or None)`` -> expressions [B, N, 64]."""

    def __init__(self, dim: int = 256, heads: int = 8, ffn: int = 1024, layers: int = 3, dropout: float = 0.1,
                 kernels: int = 8, ratio: int = 4, max_style_frames: int = 256, exp_dim: int = 64):
        super().__init__()
        self.content_encoder = ContentEncoder(dim, heads, ffn, layers, dropout)
        self.style_encoder = StyleEncoder(dim, heads, ffn, layers, dropout, max_style_frames, exp_dim)
        self.decoder = DisentangleDecoder(dim, heads, ffn, layers, dropout, WINDOW, kernels, ratio, LOWER_FACE, exp_dim)

    def forward(self, phonemes: torch.Tensor, style_exp: torch.Tensor, pad_mask: torch.Tensor | None = None,
                return_codes: bool = False):
        """``style_exp`` may hold k·B clips (training: the style clip, then triplet clips): all are
        encoded in one pass, the first B drive the decoder; ``return_codes`` also returns the k·B codes."""
        codes = self.style_encoder(style_exp, pad_mask)
        exp = self.decoder(self.content_encoder(phonemes), codes[: phonemes.shape[0]])
        return (exp, codes) if return_codes else exp

