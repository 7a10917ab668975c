"""Style-A at inference (and the parts training shares): codes, content input, batched rendering.

:class:`StyleARenderer` holds the generator, the pSp encoder and (for ``parsing="bisenet"``)
BiSeNet. It turns an identity frame and an art picture (or an ``exstyle_code.npy`` entry) into
codes once, then renders any number of coefficient windows in batches (:meth:`StyleARenderer.render_batches`
yields them one batch at a time, for videos too long to hold).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from stylization.errors import ConfigError
from stylization.numerics import inference_autocast

PARSING_SCALE = 16.0  # VToonify feeds parsing logits / 16 to the content encoder


class StyleARenderer(nn.Module):
    """Args: generator (:class:`~stylization.style_a.style_a.StyleAGenerator`), psp
    (:class:`~stylization.style_a.psp.PSP`), parser (BiSeNet, or None when parsing comes with the
    input), degree (style degree d_s)."""

    def __init__(self, generator: nn.Module, psp: nn.Module, parser: nn.Module | None = None, degree: float = 1.0):
        super().__init__()
        self.generator, self.psp, self.parser = generator, psp, parser
        self.degree = float(degree)
        self.identity_alignment = "crop"  # how the identity face for pSp is framed: crop | ffhq
        self.seconds: dict[str, float] = {}  # the last render_batches: "encode" (once), "frames" (all batches)
        self.precision = "fp32"  # render_batches' precision: fp32 | bf16 | auto (stylization.numerics.inference_autocast)

    @property
    def content_size(self) -> int:
        return self.generator.in_size

    def parse(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB [B, 3, H, W] in [-1, 1] -> BiSeNet logits [B, 19, H, W], computed as VToonify does.

        VToonify's inference (style_transfer.py, vtoonify_model.py) upsamples the frame 2× bilinearly
        (align_corners=False), runs BiSeNet on twice the frame (2·x, not ImageNet-normalised: the
        VToonify-D content encoder was trained on that map) and brings the main logits back to the
        frame's size by *nearest* subsampling (every second pixel). Its training script parses a
        blurred 512² frame and blur-downsamples the logits instead; at our content sizes only the
        inference recipe applies, and it is what released VToonify-D weights are run with.
        """
        if self.parser is None:
            raise ConfigError("this model reads parsing maps from its input (model.parsing=landmarks); pass them")
        big = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        logits = self.parser(2 * big)[0]
        return F.interpolate(logits, size=rgb.shape[-2:], mode="nearest")

    def content_input(self, rgb: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        """RGB [B, 3, C, C] (+ parsing [B, 19, C, C]; BiSeNet's when None) -> content [B, 22, C, C]."""
        if parsing is None:
            with torch.no_grad():
                parsing = self.parse(rgb)
        return torch.cat([rgb, parsing / PARSING_SCALE], 1)

    def codes(self, face: torch.Tensor) -> torch.Tensor:
        """Aligned face(s) [B, 3, P, P] -> W+ codes [B, n_latent, style_dim] (pSp)."""
        return self.psp.encode(face)

    def encode_inputs(self, batch: dict, exstyle_z: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The input builder's tensors (:class:`~stylization.data.render_inputs.RenderInputs`, batched,
        on the device) -> what :meth:`forward` reads, for training and inference alike.

        Args:
            batch: ``source`` [B, 3, C, C] in [-1, 1]; ``source_parsing`` [B, 19, C, C] (absent: BiSeNet
                parses); ``identity_face`` [B, 3, P, P]; ``art`` [B, 3, P, P] (read when ``exstyle_z`` is None).
            exstyle_z: art codes [B, n_latent, style_dim] in Z+ (``exstyle_code.npy`` entries), mapped to
                W+ by the generator's mapping network instead of pSp of the art picture.

        Returns:
            content [B, 22, C, C], identity codes and art codes (W+, [B, n_latent, style_dim]).
        """
        content = self.content_input(batch["source"], batch.get("source_parsing"))
        identity = self.codes(batch["identity_face"])
        if exstyle_z is None:
            art = self.codes(batch["art"])
        else:
            art = self.generator.generator.generator.map_codes(exstyle_z)
        return content, identity, art

    @property
    def uses_keypoints(self) -> bool:
        """Whether the generator is conditioned on keypoint heatmaps (``model.generator.keypoints``)."""
        return bool(getattr(self.generator, "keypoints", False))

    def forward(self, content: torch.Tensor, identity: torch.Tensor, art: torch.Tensor | None,
                windows: torch.Tensor, repeats: int = 1, keypoints: torch.Tensor | None = None) -> dict:
        """Per-item content [B, 22, C, C] and codes [B, L, S]; windows [B·repeats, 73, 27]; for a
        keypoint-conditioned generator, the targets' keypoints [B·repeats, 68, 2] in pixels of the
        C×C content frame (ignored otherwise)."""
        return self.generator(content, identity, art, windows, self.degree, repeats=repeats,
                              keypoints=keypoints if self.uses_keypoints else None)

    def render_batches(self, content: torch.Tensor, identity: torch.Tensor, art: torch.Tensor | None,
                       windows: torch.Tensor, batch_size: int = 8, progress: bool = False,
                       keypoints: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """One identity (content [1, 22, C, C], codes [1, L, S]) and N windows [N, 73, 27] (with
        their keypoints [N, 68, 2] for a keypoint-conditioned generator) -> frames in [-1, 1], one
        batch [n, 3, O, O] at a time (n = ``batch_size``, fewer for the last), in window order.

        The frames are drawn as the iterator is read, so a caller that writes each batch away (the
        inference pipeline encodes it) never holds the whole video.
        """
        if self.uses_keypoints and keypoints is None:
            raise ValueError("this renderer is conditioned on keypoints: pass the windows' keypoints")
        return self._batches(content, identity, art, windows, batch_size, progress, keypoints)

    @torch.no_grad()
    def _batches(self, content, identity, art, windows, batch_size, progress, keypoints) -> Iterator[torch.Tensor]:
        from tqdm import tqdm

        # The identity's half of the generator (content encoder, codes) runs once per video, not
        # once per batch; ``seconds`` records it and the per-batch half for the step timings.
        amp = lambda: inference_autocast(self.precision, content.device)  # noqa: E731
        began = time.perf_counter()
        with amp():
            prepared = self.generator.prepare(content, identity, art, self.degree)
        self.seconds = {"encode": time.perf_counter() - began, "frames": 0.0}
        starts = range(0, windows.shape[0], batch_size)
        for s in tqdm(starts, desc="Style-A", unit="batch", disable=not progress):
            w = windows[s:s + batch_size]
            kp = None if keypoints is None else keypoints[s:s + batch_size]
            began = time.perf_counter()
            with amp():
                frames = self.generator.drive(prepared, w, repeats=w.shape[0],
                                              keypoints=kp if self.uses_keypoints else None)["image"]
            frames = frames.float().clamp(-1, 1)
            self.seconds["frames"] += time.perf_counter() - began
            yield frames

    @torch.no_grad()
    def render(self, content: torch.Tensor, identity: torch.Tensor, art: torch.Tensor | None,
               windows: torch.Tensor, batch_size: int = 8, progress: bool = False,
               keypoints: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`render_batches` concatenated: frames [N, 3, O, O] in [-1, 1]."""
        return torch.cat(list(self.render_batches(content, identity, art, windows, batch_size, progress, keypoints)))
