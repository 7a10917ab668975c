"""Emotion texts of real clips: the paper's labour-free annotation, last step.

Action-unit intensities (:mod:`stylization.preprocess.aus`) become many candidate sentences
(:func:`stylization.text.emotion_text.describe_aus`); CLIP then ranks them against frames of the
clip and the best ``keep`` are the clip's texts. :class:`ClipRanker` is that ranking, with any
open_clip model (``ViT-B-32`` with OpenAI's weights as the paper; a tiny random tower in tests).
Without a ranker, the first ``keep`` candidates are used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# OpenAI CLIP's image normalisation (open_clip's OPENAI_DATASET_MEAN / STD)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipRanker:
    """Ranks sentences by their CLIP similarity to a clip's frames.

    Args:
        clip: an open_clip ``CLIP`` with both towers (:func:`stylization.loading.open_clip_model`).
        tokenizer: its tokenizer (list of N sentences -> ids [N, 77]).
        device: where CLIP runs.
    """

    def __init__(self, clip, tokenizer, device: str | torch.device = "cpu"):
        self.clip = clip.eval().requires_grad_(False).to(device)
        self.tokenizer, self.device = tokenizer, torch.device(device)
        size = clip.visual.image_size
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)

    @torch.no_grad()
    def image_features(self, frames: np.ndarray) -> torch.Tensor:
        """RGB uint8 frames [K, H, W, 3] -> the mean of their unit CLIP image vectors, unit length [D]."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255).to(self.device)
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        feats = F.normalize(self.clip.encode_image((x - mean) / std).float(), dim=-1)
        return F.normalize(feats.mean(0), dim=0)

    @torch.no_grad()
    def scores(self, frames: np.ndarray, sentences: list[str]) -> np.ndarray:
        """Cosine similarity [N] of each sentence with the frames' mean image vector."""
        text = F.normalize(self.clip.encode_text(self.tokenizer(sentences).to(self.device)).float(), dim=-1)
        return (text @ self.image_features(frames)).cpu().numpy()

    def rank(self, frames: np.ndarray, sentences: list[str], keep: int) -> list[str]:
        """The ``keep`` sentences most similar to the frames, best first (ties keep the given order)."""
        order = np.argsort(-self.scores(frames, sentences), kind="stable")
        return [sentences[i] for i in order[:keep]]


def sample_frames(frames: np.ndarray, k: int = 4) -> np.ndarray:
    """``k`` frames spread evenly over a clip [T, H, W, 3] (all of them when T <= k)."""
    if len(frames) <= k:
        return frames
    return frames[np.linspace(0, len(frames) - 1, k).round().astype(int)]
