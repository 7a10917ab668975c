"""SAAS at inference: speech + a source expression + a style clip -> an expression sequence, or
(video-driven editing) a performance's expressions + a style clip -> the performance restyled.

As the official audio-driven inference composes the parts: the source style code from the source
frame's expression repeated over a style window, the target style code from a window of the style
clip (its centre 32 frames; a shorter clip is repeated back and forth to fill the window), Audio2Exp's
expressions from the mel windows with the eyes open, then the residual adapter and decoder in the
target style. The LSTMs run over the whole sequence at once (memory grows with its length: about
1 KB per frame).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def style_window(exp: np.ndarray, frames: int) -> np.ndarray:
    """A clip's expressions [S, 64] -> its centre ``frames`` frames [frames, 64] (a shorter clip is
    extended by playing it back and forth)."""
    exp = np.asarray(exp, np.float32)
    if len(exp) < frames:
        index = np.arange(frames) % max(2 * len(exp) - 2, 1)
        exp = exp[np.where(index < len(exp), index, 2 * len(exp) - 2 - index)]
    start = (len(exp) - frames) // 2
    return exp[start: start + frames]


@torch.no_grad()
def clip_style_code(encoder: nn.Module, exp: np.ndarray) -> torch.Tensor:
    """A style clip's expressions [S, 64] (S >= 1) -> the code [1, D] of a style encoder
    (:class:`~stylization.saas.codebook.VQStyleEncoder` or a codebook) on its centre window."""
    device = next(encoder.parameters()).device
    window = style_window(exp, encoder.frames)
    return encoder.encode(torch.from_numpy(window)[None].to(device))["code"]


class SAASMotion(nn.Module):
    """Wraps a trained :class:`~stylization.saas.model.SAASGenerator` (eval mode): audio-driven
    (:meth:`generate`) or video-driven (:meth:`edit`)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator.eval()

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def style_code(self, exp: np.ndarray) -> torch.Tensor:
        """A style clip's expressions [S, 64] (S >= 1) -> code [1, D] (:func:`clip_style_code`)."""
        return clip_style_code(self.generator.style_encoder, exp)

    @torch.no_grad()
    def generate(self, mel: torch.Tensor, source_exp: torch.Tensor, target_code: torch.Tensor) -> torch.Tensor:
        """Mel windows [T, 1, 80, 16], the source frame's expression [64] and a target code [1, D] ->
        expressions [T, 64]."""
        source_exp = source_exp.to(self.device).float()
        source_code = self.style_code(source_exp[None].expand(self.generator.style_frames, -1).cpu().numpy())
        blink = torch.zeros(1, len(mel), device=self.device)
        out = self.generator.generate(target_code, source_code, mel=mel[None].to(self.device),
                                      source_exp=source_exp[None], blink=blink)
        return out[0].float()

    @torch.no_grad()
    def edit(self, exp: torch.Tensor, target_code: torch.Tensor) -> torch.Tensor:
        """Video-driven editing: a performance's expressions [T, 64] and a target code [1, D] -> the
        performance in the target style [T, 64]. The source style is the code of its first 32 frames
        (the official inference's; a shorter performance is played back and forth)."""
        if self.generator.source != "video":
            raise ValueError("editing needs the video-driven generator (a saas_edit run or video_driven.pth)")
        source_code = self.style_code(exp[: self.generator.style_frames].cpu().numpy())
        out = self.generator.generate(target_code, source_code, exp=exp[None].to(self.device).float())
        return out[0].float()


class SAASPose(nn.Module):
    """SAAS's head poses from speech (eval mode): the audio-to-pose predictor, the pose codebook and the
    style encoder whose codes the predictor was trained with (a saas_pose run's ``style_codebook``, or
    the released SAAS model's ``style_encoder``)."""

    def __init__(self, predictor: nn.Module, pose_codebook: nn.Module, style_encoder: nn.Module):
        super().__init__()
        self.predictor = predictor.eval()
        self.pose_codebook = pose_codebook.eval()
        self.style_encoder = style_encoder.eval()

    @property
    def device(self) -> torch.device:
        return next(self.predictor.parameters()).device

    def style_code(self, exp: np.ndarray) -> torch.Tensor:
        """Expressions [S, 64] of the style (S >= 1) -> code [1, D] (:func:`clip_style_code`)."""
        return clip_style_code(self.style_encoder, exp)

    @torch.no_grad()
    def generate(self, wav: np.ndarray, n_frames: int, code: torch.Tensor, first_pose: np.ndarray, top_p: float = 0.9,
                 temperature: float = 0.7, seed: int = 0, smooth: bool = True) -> np.ndarray:
        """Speech [S] at 16 kHz, the number of 25 fps frames, a style code [1, D] and the pose to start
        from [6] -> poses [n_frames, 6] (angles in radians, translation), sampled with nucleus sampling
        (``top_p``; 0: the most likely tokens) from a generator seeded with ``seed``."""
        from stylization.data.mfcc import speech_mfcc_windows
        from stylization.saas.pose import generate_poses

        audio = torch.from_numpy(speech_mfcc_windows(wav, n_frames))[None].to(self.device)
        window = self.predictor.audio_steps
        first = torch.as_tensor(np.asarray(first_pose, np.float32).reshape(1, 1, -1), device=self.device)
        generator = torch.Generator(self.device).manual_seed(int(seed))
        poses = generate_poses(self.predictor, self.pose_codebook, audio, code.to(self.device),
                               first.expand(1, window, -1), top_p=top_p, generator=generator, smooth=smooth,
                               temperature=temperature)
        return poses[0].float().cpu().numpy()
