"""Evaluation metrics: pure functions on frames, landmarks or audio; no file I/O, no network loading.

The benchmark's per-video metrics (docs/benchmark.md gives each definition and its source):

* :func:`ssim_frames`, :func:`psnr_frames` — RGB uint8 frames [T, H, W, 3] of a generated and a
  ground-truth video -> one value per frame, ViCo's definition (piq) by default. :func:`ssim` and
  :func:`psnr` are the same measures on float images [B, 3, H, W] in [0, 1], scikit-image's
  definition, as the training logs use them.
* :func:`cpbd` — RGB uint8 frames [T, H, W, 3] -> CPBD sharpness per frame (the ``cpbd`` package's
  algorithm on grayscale).
* :func:`lmd_frames` — M-LMD and F-LMD of two videos with a landmark detector passed in;
  :func:`coordinate_lmd` on landmarks already detected. :func:`landmark_distance` is the training
  logs' Euclidean distance on landmark tensors.
* :func:`sld`, :func:`slv`, :func:`smd`, :func:`d_l`, :func:`d_v`, :func:`d_a` — the reference-frame
  style transfer paper's motion metrics on landmark sequences (percent).
* :func:`csim` — cosine similarity of identity embeddings (:func:`identity.csim_frames` on frames
  with an embedder passed in).
* :func:`sync_scores`, :func:`offset_distances` — SyncNet's offset search on embeddings (LSE-D,
  LSE-C, the AV offset); the network and its crops are in :mod:`stylization.syncnet`.
"""

from stylization.metrics.image import psnr, psnr_frames, ssim, ssim_frames
from stylization.metrics.landmarks import LmdResult, coordinate_lmd, landmark_distance, lmd_frames
from stylization.metrics.identity import csim
from stylization.metrics.sharpness import cpbd
from stylization.metrics.style_motion import d_a, d_l, d_v, sld, slv, smd
from stylization.metrics.sync import offset_distances, sync_scores

__all__ = ["cpbd", "coordinate_lmd", "csim", "d_a", "d_l", "d_v", "landmark_distance", "lmd_frames", "LmdResult",
           "offset_distances", "psnr", "psnr_frames", "sld", "slv", "smd", "ssim", "ssim_frames", "sync_scores"]
