"""Lip-sync scores from SyncNet embeddings: the offset search, LSE-D, LSE-C (Sync_conf), the AV offset,
and the MFCC features SyncNet's audio tower reads. Pure functions; no network here.

Definitions are joonson/syncnet_python's ``SyncNetInstance.evaluate`` (the reference of Wav2Lip's
LSE-D / LSE-C and of the papers' Sync_conf):

* one video embedding and one audio embedding per window start i (window i covers frames i..i+4);
* for each i and each offset o in -vshift..+vshift, the euclidean distance between video window i and
  audio window i + o; audio windows outside the clip are zero vectors (the official zero-pads the
  audio embeddings by vshift rows at both ends), and the distance is ``F.pairwise_distance``'s,
  ``||v - a + 1e-6||``;
* the mean over i of each offset's distances gives a curve over the 2·vshift + 1 offsets;
* **LSE-D** = its minimum; **LSE-C** (confidence, Sync_conf) = its median minus its minimum;
* **AV offset** = vshift - argmin, in frames: video window i matches audio window i - offset best, so
  a positive offset means the video lags the audio (a video delayed by 5 frames scores +5).

``vshift=15`` (31 offsets) is the official demo's default and the issue's definition.

The MFCC features SyncNet reads are :func:`stylization.data.mfcc.mfcc` (re-exported here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylization.data.mfcc import int16_scale, mel_filterbank, mfcc  # noqa: F401  (re-exported: SyncNet's features)

VSHIFT = 15  # frames searched either side of sync (official default)
PAIRWISE_EPS = 1e-6  # F.pairwise_distance's default eps, added to the difference as the official does


# ---- offset search ----

def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """Video embeddings [N, D] and audio embeddings [N, D] (one per window start) -> distances
    [N, 2·vshift + 1]: column j holds ``||video[i] - audio[i + j - vshift] + 1e-6||``, with zero vectors
    for audio windows outside 0..N-1 (the official ``calc_pdist``)."""
    if video.ndim != 2 or video.shape != audio.shape:
        raise ValueError(f"video and audio embeddings must both be [N, D]; got {list(video.shape)} and "
                         f"{list(audio.shape)}")
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0 frames, got {vshift}")
    n, width = len(video), 2 * vshift + 1
    padded = F.pad(audio, (0, 0, vshift, vshift))  # [N + 2·vshift, D]
    windows = padded.unfold(0, width, 1)[:n]  # [N, D, width]: rows i..i+2·vshift of padded
    diff = video[:, :, None] - windows + PAIRWISE_EPS
    return diff.norm(dim=1)


def sync_scores(distances: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """Per-window distances [N, 2·vshift + 1] (:func:`offset_distances`) -> ``{"lse_d", "lse_c",
    "offset"}``: the minimum of the mean-distance curve, its median minus that minimum, and
    vshift - argmin (frames; > 0: the video lags the audio). Ties go to the first minimum (the
    largest offset), as ``torch.min`` does in the official."""
    if distances.ndim != 2 or distances.shape[1] != 2 * vshift + 1 or len(distances) == 0:
        raise ValueError(f"distances must be [N >= 1, {2 * vshift + 1}] for vshift {vshift}, "
                         f"got {list(distances.shape)}")
    curve = distances.mean(0)
    lowest, index = torch.min(curve, 0)
    return {"lse_d": float(lowest), "lse_c": float(torch.median(curve) - lowest), "offset": vshift - int(index)}


def sync_from_embeddings(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """:func:`sync_scores` of :func:`offset_distances`: video and audio embeddings [N, D] -> LSE-D,
    LSE-C and the AV offset."""
    return sync_scores(offset_distances(video, audio, vshift), vshift)
