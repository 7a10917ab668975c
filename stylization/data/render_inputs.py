"""The one input builder of the Style-A renderer, shared by training and inference.

:class:`RenderInputs` turns pictures (RGB uint8, channels last) into the renderer's tensors
(float32 in [-1, 1], channels first). :class:`~stylization.data.render_pairs.RenderPairDataset`
and :meth:`stylization.pipeline.Pipeline.run` both call it, so the frames the model trained on
and the frames it renders at inference are resized, parsed and aligned by the same code:

* :meth:`RenderInputs.identity` — the face crop (the corpus framing,
  :func:`~stylization.data.alignment.face_crop`) -> ``source`` (content input at C),
  ``source_parsing`` (19 classes drawn from the landmarks, when the model reads them from its
  input) and ``identity_face`` (pSp's input at P: the crop resized, or FFHQ-aligned);
* :meth:`RenderInputs.art` — an art reference picture -> pSp's input at P;
* :meth:`RenderInputs.frames` — real frames -> content-size frames (targets, teacher inputs).

Every resize follows :func:`resize`: the area filter when shrinking, bilinear when enlarging
(decided by the height, as the training data always was).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stylization.data.alignment import ffhq_align
from stylization.data.parsing import landmark_parsing
from stylization.errors import ConfigError

IDENTITY_ALIGNMENTS = ("crop", "ffhq")
PARSING_SOURCES = ("landmarks", "none")


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> [size, size, 3]: the area filter when shrinking (H > size), bilinear
    otherwise; returned unchanged when already that size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).movedim(-1, -3).float().div(127.5).sub(1.0)


@dataclass(frozen=True)
class RenderInputs:
    """How the Style-A renderer's inputs are made from pictures.

    Attributes:
        content_size: C, side of the content encoder's input (``model.generator.in_size``).
        code_size: P, side of pSp's input (``model.psp.input_size``).
        identity_alignment: "crop" (the crop resized to P) or "ffhq" (FFHQ alignment from the
            landmarks, as pSp was trained); ``model.identity_alignment``.
        parsing: "landmarks" (19 classes drawn from the landmarks go with the content input) or
            "none" (the renderer parses with BiSeNet itself).
    """

    content_size: int
    code_size: int
    identity_alignment: str
    parsing: str

    def __post_init__(self):
        if self.identity_alignment not in IDENTITY_ALIGNMENTS:
            raise ConfigError(f"model.identity_alignment must be one of {list(IDENTITY_ALIGNMENTS)}, "
                              f"got {self.identity_alignment!r}")
        if self.parsing not in PARSING_SOURCES:
            raise ConfigError(f"the input builder's parsing must be one of {list(PARSING_SOURCES)} "
                              f"(model.parsing=landmarks gives 'landmarks', bisenet 'none'), got {self.parsing!r}")

    def identity(self, crop: np.ndarray, crop_landmarks: np.ndarray,
                 aligned_from: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """The identity frame's tensors.

        Args:
            crop: uint8 [S, S, 3], the face crop (any S).
            crop_landmarks: [68, 2], the 68 landmarks in pixels of ``crop``.
            aligned_from: (picture uint8 [H, W, 3], its landmarks [68, 2] px) that FFHQ alignment
                resamples (inference aligns from the whole photo, not the crop); default: the crop.

        Returns:
            ``source`` float32 [3, C, C]; ``source_parsing`` float32 [19, C, C] (one-hot · 16; only
            with ``parsing == "landmarks"``); ``identity_face`` float32 [3, P, P];
            ``source_keypoints`` float32 [68, 2], the landmarks in pixels of the C×C content frame
            (what a keypoint-conditioned generator draws; :meth:`drive_keypoints` at inference).
        """
        c = self.content_size
        out = {"source": to_tensor(resize(crop, c)), "source_keypoints": self.keypoints(crop_landmarks, crop.shape[0])}
        if self.parsing == "landmarks":
            out["source_parsing"] = torch.from_numpy(landmark_parsing(crop_landmarks, c, c / crop.shape[0]))
        if self.identity_alignment == "ffhq":
            picture, landmarks = (crop, crop_landmarks) if aligned_from is None else aligned_from
            out["identity_face"] = to_tensor(ffhq_align(picture, np.asarray(landmarks), self.code_size))
        else:
            out["identity_face"] = to_tensor(resize(crop, self.code_size))
        return out

    def keypoints(self, landmarks: np.ndarray, frame_size: int) -> torch.Tensor:
        """Landmarks [..., 68, 2] in pixels of a ``frame_size`` frame -> float32 [..., 68, 2] in pixels of C."""
        return torch.from_numpy(np.asarray(landmarks, np.float32) * (self.content_size / frame_size))

    def drive_keypoints(self, source_projected: np.ndarray, targets_projected: np.ndarray,
                        crop_landmarks: np.ndarray, crop_size: int) -> torch.Tensor:
        """Inference's keypoints: the face model's projections of the source row and of every frame's
        coefficients, brought into the content frame.

        The projections live in the frame the coefficients were fitted in (the crop itself for the
        landmark fit; Deep3DFaceRecon's 224 px alignment otherwise). One similarity transform, the
        least-squares fit of the source's projection onto its detected ``crop_landmarks``, maps them
        all into the crop, so driving with the source's own coefficients draws the same keypoints in
        every frame (no motion), as in training, whatever the fit's residual.

        Args:
            source_projected: [68, 2]; targets_projected: [T, 68, 2] (pixels of the fitting frame).
            crop_landmarks: [68, 2], detected, in pixels of the ``crop_size`` crop.

        Returns:
            targets float32 [T, 68, 2], pixels of the C×C content frame.
        """
        from skimage.transform import SimilarityTransform

        src, dst = np.asarray(source_projected, np.float64), np.asarray(crop_landmarks, np.float64)
        if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
            fit = SimilarityTransform.from_estimate(src, dst)
        else:
            fit = SimilarityTransform()
            fit = fit if fit.estimate(src, dst) else None
        if not fit:
            raise ConfigError("could not relate the face model's keypoints to the detected landmarks")
        targets = np.asarray(targets_projected, np.float64)
        moved = fit(targets.reshape(-1, 2)).reshape(targets.shape)
        return self.keypoints(moved, crop_size)

    def art(self, picture: np.ndarray) -> torch.Tensor:
        """An art reference picture uint8 [H, W, 3] -> float32 [3, P, P] (pSp's input for the art code)."""
        return to_tensor(resize(picture, self.code_size))

    def frames(self, frames: np.ndarray) -> torch.Tensor:
        """Real frames uint8 [..., H, W, 3] -> float32 [..., 3, C, C] at the content size."""
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        resized = np.stack([resize(f, self.content_size) for f in flat]) if len(flat) else \
            np.zeros((0, self.content_size, self.content_size, 3), np.uint8)
        return to_tensor(resized.reshape(*lead, *resized.shape[1:]))
