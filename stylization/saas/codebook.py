"""SAAS's VQ-VAE style codebook and pose codebook, in the released layouts.

``VQStyleEncoder`` is the ``style_encoder`` of SAAS's ``video_driven.pth`` / ``audio_driven.pth``
(``tests/manifests/saas_video_driven.tsv``); ``VQCodebook`` (encoder, decoder, codebook, pooling and a
class head) is the pose codebook ``pose_codebook.pth`` (6-d poses, 200 codes) and, with 64-d
expressions and 500 codes, the multi-task style codebook SAAS trains first. Numerics follow the
official modules (tanshuai0219/SAAS ``style_extraction/models``):

* :class:`TransformerEncoder`: [B, 32, in] -> a Conv1d stack (kernel 5, replicate padding; the first
  with stride 2, the others followed by max-pooling 2; LeakyReLU 0.2 then BatchNorm) -> 4 tokens ->
  Linear -> + a learned position table -> :class:`Transformer` -> [B, 4, 256];
* :class:`Transformer`: pre-LN blocks (LayerNorm, multi-head attention, residual; LayerNorm, MLP with
  tanh-GELU, residual), **no final norm**, attention scaled by hidden_size^-1/2 (not the per-head
  size), the fused q/k/v projection split as (q, k, v) × heads × head size;
* :class:`VectorQuantizer`: nearest code by squared distance, straight-through gradients, loss
  β·|z − sg(e)|² + |sg(z) − e|² (β 0.25). It quantises the encoder's [B, 4, 256] output as the
  official code does: transposed to [B, 256, 4] and *then* cut into 256-value rows, so each
  "token" it looks up is 64 channels × the 4 time steps, not one time step (the official
  quantiser was written for channels-first input and is called channels-last). The released
  codebooks were learnt that way, so it is kept: the same numbers for the same files;
* :class:`AttentionPooling`: softmax over the 4 quantised tokens of ``tokens @ Ws^T``; the
  weighted sum is the 256-d style code;
* :class:`TransformerDecoder`: 4 quantised tokens -> a transposed convolution (×2) and Conv1d
  blocks each followed by ×2 repetition -> 32 frames -> Linear + positions -> Transformer -> Conv1d
  (kernel 5) to ``out`` channels. The official transposed convolution asks for replicate padding,
  which PyTorch refuses for transposed convolutions; it is zero-padded here (no parameter changes).

Codebook use is tracked (:attr:`VectorQuantizer.usage`, an EMA of how often each code is chosen,
and :meth:`VectorQuantizer.perplexity`); :meth:`VectorQuantizer.reseed_dead` replaces codes unused
for a while with encoder outputs of the current batch (our addition, off unless a stage calls it:
the official training has no such step and SAAS's codebook of 500 stays largely unused otherwise).
Pure ``nn.Module`` s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_ch: int, out_ch: int, stride: int, pool: bool) -> nn.Sequential:
    """Conv1d (k5, replicate padding) -> LeakyReLU 0.2 -> BatchNorm [-> MaxPool 2]."""
    layers = [nn.Conv1d(in_ch, out_ch, 5, stride=stride, padding=2, padding_mode="replicate"),
              nn.LeakyReLU(0.2), nn.BatchNorm1d(out_ch)]
    return nn.Sequential(*layers, nn.MaxPool1d(2)) if pool else nn.Sequential(*layers)


class _PreNorm(nn.Module):
    def __init__(self, fn: nn.Module, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class Attention(nn.Module):
    """Multi-head self-attention [B, T, d] -> [B, T, d]; scores scaled by ``dim``^-1/2 (the official scale)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, dim ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.to_qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.l1, self.l2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(F.gelu(self.l1(x), approximate="tanh"))


class Transformer(nn.Module):
    """``net``: ``layers`` × (Residual(PreNorm(Attention)), Residual(PreNorm(MLP))); [B, T, d] -> [B, T, d]."""

    def __init__(self, dim: int = 256, layers: int = 12, heads: int = 8, ffn: int = 384):
        super().__init__()
        blocks = []
        for _ in range(layers):
            blocks += [_Residual(_PreNorm(Attention(dim, heads), dim)), _Residual(_PreNorm(MLP(dim, ffn), dim))]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Linear(nn.Module):
    """``net``: a Linear (the official LinearEmbedding wrapper)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Positions(nn.Module):
    """``pos_embedding`` [T, d], learned, added."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(length, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embedding


class TransformerEncoder(nn.Module):
    """[B, 2^q·T', in_dim] (32 frames) -> tokens [B, T' = 4, dim]."""

    def __init__(self, in_dim: int = 64, dim: int = 256, layers: int = 12, heads: int = 8, ffn: int = 384,
                 quant_factor: int = 3, tokens: int = 4):
        super().__init__()
        self.squasher = nn.Sequential(conv_block(in_dim, dim, 2, False),
                                      *(conv_block(dim, dim, 1, True) for _ in range(1, quant_factor)))
        self.encoder_transformer = Transformer(dim, layers, heads, ffn)
        self.encoder_pos_embedding = Positions(tokens, dim)
        self.encoder_linear_embedding = _Linear(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.squasher(x.transpose(1, 2)).transpose(1, 2)
        return self.encoder_transformer(self.encoder_pos_embedding(self.encoder_linear_embedding(h)))


class TransformerDecoder(nn.Module):
    """Tokens [B, 4, dim] -> [B, 32, out_dim]."""

    def __init__(self, out_dim: int = 6, dim: int = 256, layers: int = 12, heads: int = 8, ffn: int = 384,
                 quant_factor: int = 3, frames: int = 32):
        super().__init__()
        first = nn.Sequential(nn.ConvTranspose1d(dim, dim, 5, stride=2, padding=2, output_padding=1),
                              nn.LeakyReLU(0.2), nn.BatchNorm1d(dim))
        self.expander = nn.ModuleList([first, *(conv_block(dim, dim, 1, False) for _ in range(1, quant_factor))])
        self.decoder_transformer = Transformer(dim, layers, heads, ffn)
        self.decoder_pos_embedding = Positions(frames, dim)
        self.decoder_linear_embedding = _Linear(dim)
        self.cross_smooth_layer = nn.Conv1d(dim, out_dim, 5, padding=2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = tokens.transpose(1, 2)
        for i, block in enumerate(self.expander):
            h = block(h)
            if i > 0:
                h = h.repeat_interleave(2, dim=2)
        h = self.decoder_linear_embedding(h.transpose(1, 2))
        h = self.decoder_transformer(self.decoder_pos_embedding(h))
        return self.cross_smooth_layer(h.transpose(1, 2)).transpose(1, 2)


class VectorQuantizer(nn.Module):
    """``embedding`` [n_codes, dim]: z [B, T, dim] -> (z_q [B, T, dim], loss, indices [B·T]).

    Rows are cut as the official code cuts them (module docstring): z is transposed to
    [B, dim, T] and read as B·T rows of ``dim`` values.

    Attributes:
        usage: [n_codes] EMA (decay ``usage_decay``) of each code's share of the lookups in training.
    """

    def __init__(self, n_codes: int, dim: int, beta: float = 0.25, usage_decay: float = 0.99):
        super().__init__()
        self.n_codes, self.dim, self.beta, self.usage_decay = n_codes, dim, beta, usage_decay
        self.embedding = nn.Embedding(n_codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_codes, 1.0 / n_codes)
        self.register_buffer("usage", torch.full((n_codes,), 1.0 / n_codes), persistent=False)

    def rows(self, z: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] -> the official rows [B·T, dim]."""
        return z.transpose(1, 2).reshape(-1, self.dim)

    def unrows(self, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        b, t, d = like.shape
        return rows.reshape(b, d, t).transpose(1, 2)

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Squared distances [B·T, n_codes] of the rows of ``z`` to the codes."""
        flat, codes = self.rows(z), self.embedding.weight
        return flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()

    def lookup(self, indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Code indices [B·T] -> quantised tokens shaped like ``like`` [B, T, dim]."""
        return self.unrows(self.embedding(indices), like)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        indices = self.distances(z).argmin(1)
        z_q = self.lookup(indices, z)
        loss = self.beta * (z_q.detach() - z).pow(2).mean() + (z_q - z.detach()).pow(2).mean()
        if self.training:
            share = torch.bincount(indices, minlength=self.n_codes).float() / indices.numel()
            self.usage.mul_(self.usage_decay).add_((1 - self.usage_decay) * share)
        return z + (z_q - z).detach(), loss, indices

    def perplexity(self, indices: torch.Tensor | None = None) -> float:
        """exp(entropy) of code use: of ``indices`` when given, else of :attr:`usage` (1 .. n_codes)."""
        p = self.usage if indices is None else torch.bincount(indices, minlength=self.n_codes).float()
        p = p / p.sum().clamp_min(1e-12)
        return float(torch.exp(-(p * torch.log(p + 1e-10)).sum()))

    @torch.no_grad()
    def reseed_dead(self, z: torch.Tensor, threshold: float, generator: torch.Generator | None = None) -> int:
        """Codes whose :attr:`usage` is below ``threshold`` / n_codes take the values of random rows of
        ``z`` (this batch's encoder outputs, official rows) and a fair share of use; returns how many."""
        dead = (self.usage < threshold / self.n_codes).nonzero().flatten()
        if len(dead) == 0:
            return 0
        flat = self.rows(z.detach())
        pick = torch.randint(len(flat), (len(dead),), generator=generator, device=flat.device)
        self.embedding.weight[dead] = flat[pick].to(self.embedding.weight.dtype)
        self.usage[dead] = 1.0 / self.n_codes
        return len(dead)


class AttentionPooling(nn.Module):
    """``Ws`` [1, dim]: tokens [B, T, dim] -> sum_t softmax_t(tokens · Ws) tokens_t, [B, dim]."""

    def __init__(self, dim: int = 256):
        super().__init__()
        self.Ws = nn.Parameter(torch.empty(1, dim))
        nn.init.xavier_uniform_(self.Ws)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = (tokens @ self.Ws.t()).softmax(1)  # [B, T, 1]
        return (weights * tokens).sum(1)


class VQStyleEncoder(nn.Module):
    """``encoder``, ``quantize``, ``self_attention``: 32 frames [B, 32, in_dim] -> style code [B, dim]
    (SAAS's ``style_encoder``; :meth:`encode` also returns the tokens, the VQ loss and the codes).
    ``use_codebook=False`` pools the encoder's tokens without quantising them (Table 3's "w/o
    codebook"; the codebook stays in the layout, unused)."""

    def __init__(self, in_dim: int = 64, dim: int = 256, layers: int = 12, heads: int = 8, ffn: int = 384,
                 quant_factor: int = 3, tokens: int = 4, n_codes: int = 500, beta: float = 0.25,
                 use_codebook: bool = True):
        super().__init__()
        self.use_codebook = use_codebook
        self.encoder = TransformerEncoder(in_dim, dim, layers, heads, ffn, quant_factor, tokens)
        self.quantize = VectorQuantizer(n_codes, dim, beta)
        self.self_attention = AttentionPooling(dim)

    @property
    def frames(self) -> int:
        """Frames per input window (32 in the released files)."""
        return self.encoder.encoder_pos_embedding.pos_embedding.shape[0] * 2 ** len(self.encoder.squasher)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"code" [B, dim], "tokens" [B, 4, dim] (quantised), "latent" (before), "vq_loss", "indices" [B·4]}."""
        latent = self.encoder(x)
        if self.use_codebook:
            tokens, loss, indices = self.quantize(latent)
        else:
            tokens, loss = latent, latent.new_zeros(())
            indices = self.quantize.distances(latent.detach()).argmin(1)  # the nearest codes, for the logs only
        return {"code": self.self_attention(tokens), "tokens": tokens, "latent": latent, "vq_loss": loss,
                "indices": indices}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)["code"]


class VQCodebook(VQStyleEncoder):
    """The whole VQ-VAE: :class:`VQStyleEncoder` + ``decoder`` (tokens -> the 32 frames) + ``fc``
    (code -> ``classes`` logits). SAAS's pose codebook (in 6, 200 codes, fc 256 -> 256) and its
    multi-task style codebook (in 64, 500 codes, fc -> the number of styles)."""

    def __init__(self, in_dim: int = 6, dim: int = 256, layers: int = 12, heads: int = 8, ffn: int = 384,
                 quant_factor: int = 3, tokens: int = 4, n_codes: int = 200, beta: float = 0.25,
                 classes: int = 256, use_codebook: bool = True):
        super().__init__(in_dim, dim, layers, heads, ffn, quant_factor, tokens, n_codes, beta, use_codebook)
        frames = tokens * 2 ** quant_factor
        self.decoder = TransformerDecoder(in_dim, dim, layers, heads, ffn, quant_factor, frames)
        # registration order of the released file: encoder, decoder, quantize, self_attention, fc
        for name in ("quantize", "self_attention"):
            self._modules[name] = self._modules.pop(name)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, 32, in_dim] -> :meth:`encode`'s dict + "reconstruction" [B, 32, in_dim] + "logits" [B, classes]."""
        out = self.encode(x)
        out["reconstruction"] = self.decoder(out["tokens"])
        out["logits"] = self.fc(out["code"])
        return out

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, batch: int) -> torch.Tensor:
        """Code indices [B·4] (official row order) -> frames [B, 32, in_dim]."""
        n = self.encoder.encoder_pos_embedding.pos_embedding.shape[0]
        like = torch.empty(batch, n, self.quantize.dim, device=indices.device)
        return self.decoder(self.quantize.lookup(indices, like))

