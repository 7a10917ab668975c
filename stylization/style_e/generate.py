"""Style-E inference: speech + source expression + emotion text -> expression sequence.

:class:`StyleE` bundles the trained denoiser (or the cGAN generator of the "w/o diffusion"
ablation), the Audio2Exp audio condition, the frozen text encoder and the sampler, and
turns audio of any length into [T, 64] expression coefficients: windows of W frames are
sampled together and cross-faded (:mod:`~stylization.style_e.sequence`). The sampler's chain
runs on all N windows at once (its state is a few [N, W, 64] tensors, the size of the result),
while the denoiser sees at most ``max_windows`` of them per call (:data:`WINDOWS_PER_CALL` by
default), so the network's activations do not grow with the length of the audio.
Randomness comes from a seeded ``torch.Generator``; the same seed gives the same result, for
any ``max_windows`` too: the noise of all windows is drawn in one piece, as without chunks
(only the network's rounding may differ at another batch size, see :meth:`StyleE.sample_windows`).

Classifier-free guidance on the text: x0 = x0_uncond + scale · (x0_text - x0_uncond);
``scale`` 1 is the plain conditional model, larger exaggerates the emotion, 0 ignores it.

Precision: ``"fp32"``, ``"bf16"`` (autocast around Audio2Exp and the denoiser; results move by
about 1e-3 relative) or ``"auto"``: bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16 /
AMX), where it is about 3x faster, fp32 elsewhere.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from stylization.numerics import inference_autocast
from stylization.style_e.diffusion import RespacedSampler
from stylization.style_e.sequence import blend_windows, chunk_bounds, split_windows, window_starts

# Windows per denoiser call. At the paper's width (512) and W = 32, with classifier-free guidance
# doubling the batch, each activation is 2 · 64 · 32 · 512 floats = 8 MiB; 64 windows (~61 s of
# audio at overlap 8) keep short clips in one call, as before chunking existed.
WINDOWS_PER_CALL = 64


class StyleE(nn.Module):
    """The Style-E stage assembled for inference (see the module docstring).

    A trained run becomes one with :func:`stylization.runs.style_e_from_run`.

    Args:
        denoiser: :class:`~stylization.style_e.denoiser.DiffMLP` (x0 predictor) or the cGAN generator.
        audio2exp: :class:`~stylization.style_e.audio2exp.Audio2Exp`.
        text_encoder: maps a list of sentences to [N, D] vectors (None for the no-text ablation).
        sampler: the reverse diffusion (:func:`~stylization.style_e.diffusion.build_sampler`, which
            holds the schedule); None means a one-shot generator (cGAN): x0 = denoiser(z, t=0, ...).
        overlap_frames: frames shared by neighbouring windows of a long sequence (``model.overlap_frames``).
        precision: "fp32", "bf16" or "auto" (see the module docstring).
        channels_last: store Audio2Exp's convolution weights channels-last (faster on CPUs, same values).
    """

    def __init__(self, denoiser: nn.Module, audio2exp: nn.Module, text_encoder: nn.Module | None,
                 sampler: RespacedSampler | None, *, overlap_frames: int, precision: str = "fp32",
                 channels_last: bool = False):
        super().__init__()
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.denoiser, self.audio2exp, self.text_encoder = denoiser, audio2exp, text_encoder
        self.precision = precision
        if channels_last:
            # Channels-last convolution weights (with Audio2Exp's channels-last input) are ~1.7x
            # faster on CPUs; values and parameter names are unchanged. Off while training, so
            # training numerics never depend on whether a validation ran.
            self.audio2exp.to(memory_format=torch.channels_last)
        self.window = denoiser.window_frames
        self.overlap = int(overlap_frames)
        self.sampler = sampler

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def autocast(self):
        """bf16 autocast when the precision asks for it (see the module docstring)."""
        return inference_autocast(self.precision, self.device)

    @torch.no_grad()
    def text_vector(self, text: str | torch.Tensor | None) -> torch.Tensor | None:
        """A sentence (or a ready [D] vector, e.g. from :func:`interpolate_texts`) -> [D]."""
        if text is None or not self.denoiser.use_text:
            return None  # the "w/o emotion text" model ignores texts
        if isinstance(text, torch.Tensor):
            return text.to(self.device)
        if self.text_encoder is None:
            raise ValueError("this StyleE has no text encoder: pass text vectors, not sentences")
        return self.text_encoder([text])[0].to(self.device)

    @torch.no_grad()
    def audio_expression(self, mel: torch.Tensor, source_exp: torch.Tensor, blink: torch.Tensor | None = None,
                         chunk: int = 256) -> torch.Tensor:
        """Mel windows [T, 1, 80, 16] + source exp [64] -> Audio2Exp expression [T, 64]."""
        n = mel.shape[0]
        blink = torch.zeros(n, device=mel.device) if blink is None else blink
        with self.autocast():
            parts = [self.audio2exp(mel[None, s:s + chunk], source_exp[None], blink[None, s:s + chunk])[0].float()
                     for s in range(0, n, chunk)]
        return torch.cat(parts)

    def _denoise_fn(self, audio_exp: torch.Tensor, text: torch.Tensor | None, scale: float, max_windows: int):
        """(x_t [N, W, 64], t [N]) -> guided x0 [N, W, 64], the network called on balanced chunks of at
        most ``max_windows`` windows (each window's result depends on that window alone)."""
        bounds = chunk_bounds(audio_exp.shape[0], max_windows)

        def denoise(x_t, t):
            with self.autocast():
                parts = [guided(x_t[a:b], t[a:b], audio_exp[a:b]).float() for a, b in bounds]
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        def guided(x_t, t, audio):
            n = x_t.shape[0]
            if text is None or not self.denoiser.use_text:
                return self.denoiser(x_t, t, audio, None)
            texts = text.expand(n, -1)
            if scale == 1.0:
                return self.denoiser(x_t, t, audio, texts)
            keep = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]).to(x_t.device)
            both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([audio, audio]),
                                 torch.cat([texts, texts]), keep)
            cond, uncond = both[:n], both[n:]
            return uncond + scale * (cond - uncond)

        return denoise

    @torch.no_grad()
    def sample_windows(self, audio_exp: torch.Tensor, text: torch.Tensor | None, guidance_scale: float,
                       generator: torch.Generator, *, max_windows: int = WINDOWS_PER_CALL) -> torch.Tensor:
        """[N, W, 64] audio conditions -> [N, W, 64] expression windows.

        The noise (x_T, and each stochastic step's) is drawn for all N windows at once and the
        sampler's updates run on all of them; only the denoiser is called ``max_windows`` windows at
        a time, so the same ``generator`` state gives the same windows for any ``max_windows``:
        exactly, up to the network's own rounding, which may change with the batch size (on the
        CPU PyTorch picks its 1×1-convolution algorithm by batch size; ~1e-6 apart).
        """
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {max_windows}")
        denoise = self._denoise_fn(audio_exp, text, guidance_scale, max_windows)
        shape = tuple(audio_exp.shape)
        noise = torch.randn(shape, generator=generator, device=generator.device).to(audio_exp.device)
        if self.sampler is None:
            return denoise(noise, torch.zeros(shape[0], dtype=torch.long, device=audio_exp.device))
        return self.sampler.sample(denoise, shape, x_T=noise, generator=generator, device=audio_exp.device)

    @torch.no_grad()
    def generate(self, mel: torch.Tensor, source_exp: torch.Tensor, text: str | torch.Tensor | None,
                 guidance_scale: float = 1.0, seed: int = 0, blink: torch.Tensor | None = None, *,
                 max_windows: int = WINDOWS_PER_CALL) -> torch.Tensor:
        """Mel windows [T, 1, 80, 16], source exp [64], text -> expression [T, 64] for any T >= 1
        (``max_windows``: windows per denoiser call, see :meth:`sample_windows`)."""
        device = self.device
        mel, source_exp = mel.to(device), source_exp.to(device).float()
        n_frames = mel.shape[0]
        audio_exp = self.audio_expression(mel, source_exp, None if blink is None else blink.to(device))
        starts = window_starts(n_frames, self.window, self.overlap)
        windows = split_windows(audio_exp, starts, self.window)
        generator = torch.Generator("cpu").manual_seed(int(seed))
        out = self.sample_windows(windows, self.text_vector(text), float(guidance_scale), generator,
                                  max_windows=max_windows)
        return blend_windows(out.float(), starts, n_frames)


def mel_windows_tensor(wav: np.ndarray) -> torch.Tensor:
    """16 kHz audio -> per-frame mel windows [T, 1, 80, 16] (T = whole 25 fps frames)."""
    from stylization.data.audio import mel_windows, melspectrogram, n_video_frames

    return torch.from_numpy(mel_windows(melspectrogram(wav), n_video_frames(wav.size)))
