"""SAAS's audio-to-pose predictor (a FACT-style cross-modal transformer over pose-codebook tokens), in the
released layout, with the official generation loop.

:class:`AudioPosePredictor` holds the parameters of SAAS's ``audio2pose.pth`` (``state_dict``; every key
there carries DataParallel's ``module.`` prefix, which the loader removes; ``tests/manifests/saas_audio2pose.tsv``).
The attribute names are the official ones, misspellings included (``audio_eocder``, ``audio_eocder_fc``),
so the file loads strictly. Numerics follow tanshuai0219/SAAS ``audio2pose/models/modules`` (``FACTModel``
and its ``base_models``); with the released sizes:

* the audio branch: each video frame's MFCC window [28, 12] -> ``audio_eocder`` (Conv2d 3×3 without bias ->
  BatchNorm -> ReLU blocks, 1 -> 64 -> 128, MaxPool 3 stride (1, 2), 128 -> 256 -> 256 -> 512, MaxPool 3
  stride 2: [512, 12, 2]) -> ``audio_eocder_fc`` (12288 -> 2048 -> 256, ReLU after each) -> 256-d. The
  official code runs it frame by frame in a Python loop; it runs here on all B·T windows at once (the same
  numbers in eval mode; in training, BatchNorm's batch statistics then pool B·T windows instead of B);
* the speaker branch: ``audio_projector`` (256 -> 400) + a learned position table [32, 400] is the query
  stream; the style code [B, 256] -> ``motion_projector`` (-> 400), repeated over the 32 steps, + its own
  position table, is the key/value stream; ``cm_transformer``: 2 × (cross-modal attention, MLP), pre-norm,
  where only the key/value stream is normalised and carried on: ``x_b += to_out(attn(q = to_q(x_a),
  k, v = to_kv(LN(x_b))))``, ``x_b += MLP(LN(x_b))``; the audio stream ``x_a`` enters every block as
  projected + positions (never normalised, never updated). Attention scaled by hidden^-1/2 (400, not the
  per-head 40). Then ``post_compressor`` (Conv1d k5 replicate padding stride 2, LeakyReLU 0.2, BatchNorm; then
  2 × the same with stride 1 followed by MaxPool 2: 32 -> 4 steps) and ``post_projector`` (400 -> 200);
* the past branch: the last 4 pose-codebook tokens -> ``listener_past_tok_embedding`` (Embedding 200 ×
  200) + ``listener_past_pos_embedding`` [4, 200], through ``listener_past_transformer`` (1 pre-norm
  block) only when ``mask_index < 0`` (below);
* ``cross_modal_layer``: [past 4 ; speaker 4] + ``cross_pos_embedding`` [8, 200] -> 5 pre-norm blocks
  (self-attention with a fused ``to_qkv``, scaled by 200^-1/2; MLP 200 -> 128 -> 200, tanh-GELU), no
  norm between blocks, then ``cross_norm_layer`` (LayerNorm) and ``cross_output_layer`` (200 -> 200 codes,
  no bias): logits [B, 8, 200]. Output row i is the prediction of the i-th token from the start of the
  audio window (the generation loop reads rows 0..3).

``mask_index`` (the official ``forward(inputs, max_mask, mask_index)`` with ``max_mask`` = 4):

* ``k >= 0``: the past features are zeros + positions except the last ``k`` tokens' embeddings (``k = 0``:
  no past; ``k >= 4``: all 4 tokens), no past transformer, and in the cross-modal layer the query rows of
  the first ``4 - k`` past positions may not look at the 4 past positions (they still see the speaker
  rows; the last ``k`` rows and the speaker rows see everything). So the output depends only on the last
  ``k`` tokens. The official generation passes ``k = 0, 0, 1, 2, 3, 4, 5, ...``.
* ``k < 0``: the official ``forward(inputs, None, -1)``: all tokens through the past transformer, no mask.
  The official *training* call ``forward(inputs, 4, -1)`` does not take this path: its ``gen_mask`` draws
  ``k`` uniformly from 0..20 (``numpy.random.RandomState(23456)``, once per batch, since the drawn value
  overwrites the argument for the remaining samples) and then runs the ``k >= 0`` path, so the past
  transformer is never used or trained by the official scripts. The draw is explicit here: pass
  ``mask_index=`` :func:`sample_mask_index`'s value.

:func:`generate_poses` is the official inference loop (``gen_pose`` in ``audio_driven/train_test/inference.py``,
the same as ``generate_one`` in ``audio2pose/train_test/test_vq_decoder.py``) on top of the pose codebook
(:class:`~stylization.saas.codebook.VQCodebook`); its ``generate_mfcc`` is
:func:`stylization.data.mfcc.speech_mfcc_windows`; :func:`nucleus_sample` its token sampling (the pose VQ
model's ``get_logit``).
Pure ``nn.Module`` s and tensor functions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stylization.data.mfcc import MFCC_WINDOW
from stylization.saas.codebook import MLP, Attention, Positions, VQCodebook



# ---- building blocks --------------------------------------------------------------------------------

def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """The official ``conv2d`` helper: Conv2d 3×3, padding 1, no bias -> BatchNorm2d -> ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _Norm(nn.Module):
    """``norm`` (LayerNorm, eps 1e-5) and ``fn``: the official ``Norm`` wrapper's parameters."""

    def __init__(self, fn: nn.Module, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.fn = fn


class _Block(nn.Module):
    """``fn`` = :class:`_Norm`: the official ``Residual(Norm(fn))``; the caller applies it (the inputs differ)."""

    def __init__(self, fn: nn.Module, dim: int):
        super().__init__()
        self.fn = _Norm(fn, dim)


class MaskedAttention(Attention):
    """:class:`~stylization.saas.codebook.Attention` (fused ``to_qkv`` cut as (q, k, v) × heads × head
    size, scores scaled by ``dim``^-1/2: FACT's numerics too) with an optional boolean mask
    ``allowed`` [B, T, T] (False: the score is -inf before the softmax)."""

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.to_qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) * self.scale  # [B, heads, T, T]
        if allowed is not None:
            scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        return self.to_out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


class SelfTransformer(nn.Module):
    """``net``: ``layers`` × (attention block, MLP block), pre-norm, residual, no final norm:
    [B, T, d] (+ ``allowed`` [B, T, T]) -> [B, T, d]. Keys ``net.{2i}.fn.norm``, ``net.{2i}.fn.fn.to_qkv``,
    ``net.{2i+1}.fn.fn.l1`` ... as FACT's ``Transformer``."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int):
        super().__init__()
        blocks = []
        for _ in range(layers):
            blocks += [_Block(MaskedAttention(dim, heads), dim), _Block(MLP(dim, ffn), dim)]
        self.net = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        for attn, mlp in zip(self.net[0::2], self.net[1::2]):
            x = x + attn.fn.fn(attn.fn.norm(x), allowed)
            x = x + mlp.fn.fn(mlp.fn.norm(x))
        return x


class CrossAttention(nn.Module):
    """FACT's ``CrossModalAttention`` (no ``in_dim2``): queries ``to_q(x_a)``, keys and values
    ``to_kv(x_b)`` (cut as k, v × heads × head size), scores scaled by ``dim``^-1/2, then ``to_out``.
    x_a, x_b [B, T, dim] (the same T: the official code concatenates q and kv before cutting) -> [B, T, dim]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, dim ** -0.5
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        b, t, d = x_a.shape
        q = self.to_q(x_a).view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.to_kv(x_b).view(b, t, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, t, d))


class CrossTransformer(nn.Module):
    """``net``: ``layers`` × (cross-attention block, MLP block); only the key/value stream ``x_b`` is
    normalised and updated (module docstring). (x_a, x_b) [B, T, d] -> x_b [B, T, d]."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int):
        super().__init__()
        blocks = []
        for _ in range(layers):
            blocks += [_Block(CrossAttention(dim, heads), dim), _Block(MLP(dim, ffn), dim)]
        self.net = nn.ModuleList(blocks)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        for attn, mlp in zip(self.net[0::2], self.net[1::2]):
            x_b = x_b + attn.fn.fn(x_a, attn.fn.norm(x_b))
            x_b = x_b + mlp.fn.fn(mlp.fn.norm(x_b))
        return x_b


class CrossModalLayer(nn.Module):
    """``transformer_layer`` (masked pre-norm self-attention), ``cross_norm_layer``, ``cross_output_layer``
    (no bias), ``cross_pos_embedding``: [past [B, P, d] ; speaker [B, S, d]] -> logits [B, P + S, out]."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, length: int, out_dim: int):
        super().__init__()
        self.transformer_layer = SelfTransformer(dim, layers, heads, ffn)
        self.cross_norm_layer = nn.LayerNorm(dim)
        self.cross_output_layer = nn.Linear(dim, out_dim, bias=False)
        self.cross_pos_embedding = Positions(length, dim)

    def forward(self, past: torch.Tensor, speaker: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        h = self.transformer_layer(self.cross_pos_embedding(torch.cat([past, speaker], 1)), allowed)
        return self.cross_output_layer(self.cross_norm_layer(h))


# ---- the predictor ----------------------------------------------------------------------------------

class AudioPosePredictor(nn.Module):
    """SAAS's ``FACTModel`` in the released layout (module docstring; ``audio_eocder`` and
    ``audio_eocder_fc`` keep the official spelling so that ``audio2pose.pth`` loads strictly).

    Defaults are the released sizes: hidden 200 (the speaker branch at twice that), ``layers`` = 5
    cross-modal blocks (10 sub-blocks), 10 heads, MLP 128, 4 past tokens, 32 audio steps, 200 codes,
    a 256-d style code, ``quant_factor`` 3 (32 audio steps -> 4 speaker tokens), 28 × 12 MFCC windows.
    ``audio_channels``, ``audio_hidden`` and ``audio_dim`` size the audio encoder (released: 64, 128,
    256, 256, 512; 2048; 256); smaller values are for tests.
    """

    def __init__(self, hidden: int = 200, layers: int = 5, heads: int = 10, ffn: int = 128, past_tokens: int = 4,
                 audio_steps: int = 32, n_codes: int = 200, style_dim: int = 256, quant_factor: int = 3,
                 mfcc_window: tuple[int, int] = (MFCC_WINDOW, 12), past_layers: int = 1, speaker_layers: int = 2,
                 audio_channels: tuple[int, ...] = (64, 128, 256, 256, 512), audio_hidden: int = 2048,
                 audio_dim: int = 256):
        super().__init__()
        if audio_steps % 2 ** quant_factor:
            raise ValueError(f"audio_steps ({audio_steps}) must be a multiple of 2^quant_factor")
        self.past_tokens, self.audio_steps, self.mfcc_window = past_tokens, audio_steps, tuple(mfcc_window)
        c1, c2, c3, c4, c5 = audio_channels
        self.audio_eocder = nn.Sequential(
            _conv_bn_relu(1, c1), _conv_bn_relu(c1, c2), nn.MaxPool2d(3, stride=(1, 2)),
            _conv_bn_relu(c2, c3), _conv_bn_relu(c3, c4), _conv_bn_relu(c4, c5), nn.MaxPool2d(3, stride=(2, 2)))
        h, w = mfcc_window
        h, w = (h - 3 + 1 - 3) // 2 + 1, ((w - 3) // 2 + 1 - 3) // 2 + 1  # after the two max-pools
        self.audio_eocder_fc = nn.Sequential(nn.Linear(c5 * h * w, audio_hidden), nn.ReLU(),
                                             nn.Linear(audio_hidden, audio_dim), nn.ReLU())
        self.listener_past_transformer = SelfTransformer(hidden, past_layers, heads, ffn)
        self.listener_past_pos_embedding = Positions(past_tokens, hidden)
        self.listener_past_tok_embedding = nn.Embedding(n_codes, hidden)
        wide = 2 * hidden
        self.audio_projector = nn.Linear(audio_dim, wide)
        self.audio_full_pos_embedding = Positions(audio_steps, wide)
        self.motion_projector = nn.Linear(style_dim, wide)
        self.motion_full_pos_embedding = Positions(audio_steps, wide)
        self.cm_transformer = CrossTransformer(wide, speaker_layers, heads, ffn)
        post = [nn.Sequential(nn.Conv1d(wide, wide, 5, stride=2, padding=2, padding_mode="replicate"),
                              nn.LeakyReLU(0.2), nn.BatchNorm1d(wide))]
        post += [nn.Sequential(nn.Conv1d(wide, wide, 5, stride=1, padding=2, padding_mode="replicate"),
                               nn.LeakyReLU(0.2), nn.BatchNorm1d(wide), nn.MaxPool1d(2))
                 for _ in range(1, quant_factor)]
        self.post_compressor = nn.Sequential(*post)
        self.post_projector = nn.Linear(wide, hidden)
        speaker_tokens = audio_steps // 2 ** quant_factor
        self.cross_modal_layer = CrossModalLayer(hidden, layers, heads, ffn, past_tokens + speaker_tokens, n_codes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """The official initialisation: Linear / Embedding weights N(0, 0.02), Linear biases 0, LayerNorm 1 / 0."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """MFCC windows [B, T, 28, 12] -> per-step features [B, T, 256] (all B·T windows in one batch)."""
        b, t = audio.shape[:2]
        h = self.audio_eocder(audio.float().reshape(b * t, 1, *audio.shape[2:]))
        return self.audio_eocder_fc(h.flatten(1)).view(b, t, -1)

    def encode_speaker(self, audio: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Audio windows [B, T, 28, 12] (or their :meth:`encode_audio` features [B, T, 256]) + style
        [B, 256] -> speaker tokens [B, T / 2^quant_factor, hidden]."""
        feats = audio if audio.dim() == 3 else self.encode_audio(audio)
        x_a = self.audio_full_pos_embedding(self.audio_projector(feats))
        x_b = self.motion_full_pos_embedding(self.motion_projector(style)[:, None].expand(-1, x_a.shape[1], -1))
        h = self.cm_transformer(x_a, x_b)
        return self.post_projector(self.post_compressor(h.transpose(1, 2)).transpose(1, 2))

    def encode_past(self, past: torch.Tensor, mask_index: int) -> torch.Tensor:
        """Past token ids [B, P] -> past features [B, P, hidden] (module docstring for ``mask_index``)."""
        embed, positions = self.listener_past_tok_embedding, self.listener_past_pos_embedding
        if mask_index < 0:
            return self.listener_past_transformer(positions(embed(past)))
        feats = embed.weight.new_zeros(*past.shape, embed.embedding_dim)
        if mask_index > 0:
            feats[:, -mask_index:] = embed(past[:, -mask_index:])
        return positions(feats)

    def attention_mask(self, batch: int, mask_index: int, device: torch.device) -> torch.Tensor | None:
        """``allowed`` [B, L, L] for the cross-modal layer (None for ``mask_index < 0``): query rows of the
        first P - k past positions may not attend to the P past positions."""
        if mask_index < 0:
            return None
        p = self.past_tokens
        length = self.cross_modal_layer.cross_pos_embedding.pos_embedding.shape[0]
        allowed = torch.ones(length, length, dtype=torch.bool, device=device)
        allowed[:max(p - mask_index, 0), :p] = False
        return allowed.expand(batch, -1, -1)

    def forward(self, audio: torch.Tensor, style: torch.Tensor, past: torch.Tensor, mask_index: int) -> torch.Tensor:
        """audio [B, 32, 28, 12] MFCC windows (or their per-frame features [B, 32, 256] from
        :meth:`encode_audio`: each window is encoded on its own, so a loop over overlapping windows
        can encode every frame once), style [B, 256], past [B, 4] code ids (long), ``mask_index``
        (int: < 0 all the past through the past transformer, 0 no past, k > 0 the last k tokens) ->
        logits [B, 4 + 4, n_codes]."""
        if past.shape[1] != self.past_tokens:
            raise ValueError(f"past has {past.shape[1]} tokens, the model takes {self.past_tokens}")
        past_feats = self.encode_past(past, int(mask_index))
        speaker = self.encode_speaker(audio, style)
        return self.cross_modal_layer(past_feats, speaker, self.attention_mask(len(past), int(mask_index), past.device))


def sample_mask_index(generator: torch.Generator | None = None, past_tokens: int = 4) -> int:
    """The official training draw of ``mask_index`` (``gen_mask``): uniform over 0 .. 5·past_tokens, so
    values >= past_tokens (all of the past, unmasked) come 17 times in 21 at the released size."""
    device = "cpu" if generator is None else generator.device
    return int(torch.randint(0, 5 * past_tokens + 1, (1,), generator=generator, device=device))


# ---- sampling ---------------------------------------------------------------------------------------

def nucleus_sample(logits: torch.Tensor, top_p: float = 0.9, generator: torch.Generator | None = None,
                   temperature: float = 1.0, greedy: bool = False) -> torch.Tensor:
    """Top-p sampling: logits [..., K] -> code ids [...] (long).

    Logits are divided by ``temperature``; in descending order, a code is kept while the probability
    mass of the codes before it is <= ``top_p`` (so the first code that brings the mass above
    ``top_p`` is kept too, and the top code always); the kept codes are renormalised and one is drawn
    with :func:`torch.multinomial` (in the original code order, so that a generator in the same state
    draws what the official code draws). ``greedy`` or ``top_p <= 0``: the argmax, no draw.

    The official ``get_logit`` of the pose VQ model (as ``gen_pose`` calls it: ``sample=True``,
    ``top_p=0.9``, ``temperature=0.7``) does exactly this on its first row, with the global torch
    generator; it samples at inference, it is not an argmax (its ``sample=False`` branch, the top-1 of the
    filtered probabilities, is never used by the released scripts). :func:`generate_poses` passes its
    ``temperature`` (0.7 by default, the official value).
    """
    if greedy or top_p <= 0:
        return logits.argmax(-1)
    scaled = logits.float() / temperature
    sorted_logits, order = scaled.sort(-1, descending=True)
    mass = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = torch.zeros_like(mass, dtype=torch.bool)
    drop_sorted[..., 1:] = mass[..., :-1] > top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    probs = scaled.masked_fill(drop, float("-inf")).softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(logits.shape[:-1])


# ---- generation -------------------------------------------------------------------------------------

def smooth_poses(poses: np.ndarray | torch.Tensor, window: int = 13, order: int = 2) -> np.ndarray | torch.Tensor:
    """Savitzky–Golay smoothing along time (axis 1 of [B, T, C]), ``scipy.signal.savgol_filter``'s defaults
    otherwise (``mode='interp'``); the official post-processing. Returns the input's type."""
    from scipy.signal import savgol_filter

    if torch.is_tensor(poses):
        out = savgol_filter(poses.detach().cpu().numpy(), window, order, axis=1)
        return torch.as_tensor(out, dtype=poses.dtype, device=poses.device)
    return savgol_filter(np.asarray(poses), window, order, axis=1)


@torch.no_grad()
def generate_poses(predictor: AudioPosePredictor, codebook: VQCodebook, audio_windows: torch.Tensor,
                   style: torch.Tensor, first_poses: torch.Tensor, top_p: float = 0.9,
                   generator: torch.Generator | None = None, smooth: bool = True,
                   temperature: float = 0.7) -> torch.Tensor:
    """The official autoregressive loop: audio windows [B, T, 28, 12] (one per video frame), style
    [B, 256], the first 32 frames' poses [B, 32, 6] -> poses [B, T, 6]. Both modules in eval mode.

    ``top_p`` / ``temperature`` / ``generator`` go to :func:`nucleus_sample` (official: 0.9, 0.7, the
    global generator; ``top_p=0``: greedy). Indices, with T' = T extended to a multiple of 32 by repeating
    the last window (as the official code does; and to at least 64 frames, below which the official loop
    crashes), n = T' / 8 tokens, one token = 8 frames:

    * ``tokens`` starts with the codebook ids of ``first_poses`` (4 tokens, ids 0..3);
    * first call: audio frames 0..31, ``mask_index`` 0 -> row 0 -> token 4;
    * then for t = 0, 8, ..., T' - 40 (j = t / 8): past = tokens j..j+3, audio frames t+8 .. t+39,
      ``mask_index`` j -> row 0 -> token j + 5; at the last t, rows 0..3 -> tokens j+5 .. j+8;
    * tokens 4.. (n of them) are the output: token 4 + i covers frames 8i .. 8i+7, and was predicted from
      the audio window starting at frame 8i. Token j+5 sees the last min(j, 4) of tokens j..j+3, which end
      8 frames before its window: token j+4, the one just before it, is never in its past;
    * decoding: every 4-token window i .. i+3 of the output tokens -> 32 frames, of which frames 0..7 are
      kept (all 32 for the last window): T' frames, Savitzky–Golay smoothed (13, 2; :func:`smooth_poses`)
      when ``smooth``, then cut to T.

    With ``mask_index`` = j, the first 4 tokens (``first_poses``') are never seen: the output does not
    depend on ``first_poses`` (the official code, kept).
    """
    b, frames = audio_windows.shape[:2]
    window = predictor.audio_steps  # 32 frames
    padded = max(-(-frames // window) * window, 2 * window)
    audio = torch.cat([audio_windows, audio_windows[:, -1:].expand(-1, padded - frames, -1, -1)], 1)
    audio = predictor.encode_audio(audio)  # every frame's features once (the windows below overlap by 3/4)
    per_window = codebook.encoder.encoder_pos_embedding.pos_embedding.shape[0]  # 4 tokens
    token_frames = window // per_window  # 8 frames

    def sample(logits: torch.Tensor) -> torch.Tensor:
        return nucleus_sample(logits, top_p, generator, temperature)

    tokens = list(codebook.encode(first_poses[:, :window])["indices"].view(b, per_window).unbind(1))
    logits = predictor(audio[:, :window], style, torch.stack(tokens, 1), 0)
    tokens.append(sample(logits[:, 0]))
    last = padded - window - token_frames
    for t in range(0, padded - window, token_frames):
        j = t // token_frames
        past = torch.stack(tokens[j:j + per_window], 1)
        logits = predictor(audio[:, t + token_frames:t + token_frames + window], style, past, j)
        for row in range(per_window if t == last else 1):
            tokens.append(sample(logits[:, row]))
    out = torch.stack(tokens[per_window:], 1)  # [B, n]
    n = out.shape[1]
    windows = out.unfold(1, per_window, 1)  # [B, n - 3, 4]: windows[:, i] = tokens i .. i+3
    decoded = codebook.decode_indices(windows.reshape(-1), b * (n - per_window + 1))
    decoded = decoded.view(b, n - per_window + 1, window, -1)
    poses = torch.cat([decoded[:, :-1, :token_frames].flatten(1, 2), decoded[:, -1]], 1)  # [B, T', 6]
    if smooth:
        poses = smooth_poses(poses)
    return poses[:, :frames]
