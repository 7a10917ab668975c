"""The emotion-text condition: CLIP's projected text embedding, frozen, cached per sentence.

The default is open_clip's ``ViT-B-32`` with ``pretrained="openai"`` (loaded from the user's
cache, or downloaded on the user's machine). ``pretrained=None`` builds a randomly
initialised model of the named config; a dict config builds any open_clip CLIP (the tests
and the CPU-sized configuration use a tiny text tower) with open_clip's bundled tokenizer.
"""

from __future__ import annotations

import torch
from torch import nn

from stylization.errors import CheckpointError


def tiny_clip_config(embed_dim: int = 512, width: int = 64, layers: int = 2, heads: int = 2) -> dict:
    """An open_clip CLIP config with a small text tower and a minimal vision tower."""
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers}}


class ClipTextEncoder(nn.Module):
    """Sentences -> L2-normalised projected CLIP text vectors [N, embed_dim], cached by sentence.

    Args:
        model: a model name ("ViT-B-32") or an open_clip CLIP config dict.
        pretrained: open_clip tag ("openai") or a local checkpoint path; None for random weights.
        seed: initialisation seed when ``pretrained`` is None (deterministic random features).
    """

    def __init__(self, model: str | dict = "ViT-B-32", pretrained: str | None = "openai", seed: int = 0):
        super().__init__()
        import open_clip

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if isinstance(model, str):
                try:
                    clip = open_clip.create_model(model, pretrained=pretrained)
                except Exception as exc:  # open_clip raises RuntimeError / HF errors when weights are unavailable
                    raise CheckpointError(
                        f"cannot load CLIP {model} pretrained={pretrained!r} ({type(exc).__name__}: {exc}); "
                        "it downloads once into the open_clip / Hugging Face cache, or pass a local file path"
                    ) from None
                self.tokenizer = open_clip.get_tokenizer(model)
            else:
                clip = open_clip.CLIP(**dict(model))
                self.tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the bundled BPE vocabulary
        clip.visual = None  # the image tower is not used
        self.clip = clip.eval().requires_grad_(False)
        self.embed_dim = int(clip.text_projection.shape[1])
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always in eval mode

    @torch.no_grad()
    def forward(self, sentences: list[str]) -> torch.Tensor:
        """[N] sentences -> [N, embed_dim] on the model's device."""
        device = self.clip.text_projection.device
        missing = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        if missing:
            feats = self.clip.encode_text(self.tokenizer(missing).to(device)).float()
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            self._cache.update({s: f for s, f in zip(missing, feats)})
        return torch.stack([self._cache[s].to(device) for s in sentences])


def interpolate_texts(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two normalised text vectors [..., D] (alpha 0 -> a, 1 -> b)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.arccos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - alpha) * omega) / so) * a_n + (torch.sin(alpha * omega) / so) * b_n
