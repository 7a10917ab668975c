"""Training stage ``syncnet``: a SyncNet trained on a corpus, for LSE-D / LSE-C where the released
``syncnet_v2.model`` cannot be had (no download here) and as a lip-sync expert.

Data (:class:`SyncWindowDataset`): per item one video window (5 frames of the clip, the whole frame
— or its lower half, ``model.input_crop`` — resized to ``model.frame_size`` and fed as the official
feeds its face crop: BGR, 0..255; the evaluation crops the same way for this network) and the
audio windows (MFCC, 13 x 20) at every offset -K..K frames around it (K = ``stage.max_offset``).

Loss: the multi-way matching of SyncNet v2 ("Perfect match", Chung et al. 2019): the negative
euclidean distances between the video embedding and the 2K+1 audio embeddings are logits, and the
in-sync offset is the class (cross-entropy). The evaluation's offset search takes the same
minimum distance, so what the loss ranks is what LSE-D / LSE-C and the AV offset read.

Validation: the loss, the accuracy of the arg-min offset, and the mean distance in sync vs off sync.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import Dataset

from stylization.data.corpus import Corpus
from stylization.data.datasets import LRUCache
from stylization.data.video import read_video
from stylization.engine.stage import StepContext, TrainingStage
from stylization.metrics.sync import int16_scale, mfcc
from stylization.syncnet.evaluate import face_crops
from stylization.syncnet.model import AUDIO_WINDOW_STEPS, MFCC_STEPS_PER_FRAME, VIDEO_WINDOW_FRAMES


class SyncWindowDataset(Dataset):
    """``items_per_clip`` items per clip of ``split``; item = {"video": float [3, 5, S, S] (BGR 0..255),
    "audio": float [2K+1, 1, 13, 20] (offset -K first), "target": K}.

    The window start is a deterministic function of (seed, epoch, index), as in
    :class:`~stylization.data.datasets.ClipWindowDataset`: a resumed run sees the same items.
    Each worker keeps the cropped frames and MFCC of up to ``cache_clips`` clips (T·S²·3 bytes each:
    3.8 MB for 100 frames at S = 112); decoding a clip costs ~0.17 s, 30x a window's training step."""

    def __init__(self, root: str, split: str, frame_size: int, max_offset: int, items_per_clip: int = 8,
                 seed: int = 0, speakers=None, cache_clips: int = 256, lower_half: bool = False):
        self.corpus = Corpus(root)
        self.lower_half = bool(lower_half)
        self._cache = LRUCache(int(cache_clips))
        self.frame_size, self.max_offset = int(frame_size), int(max_offset)
        self.items_per_clip, self.seed, self.epoch = int(items_per_clip), int(seed), 0
        need = VIDEO_WINDOW_FRAMES + 2 * self.max_offset + 1  # frames for one window with every offset
        self.clips = [r for r in self.corpus.clips(split, speakers) if r.n_frames >= need]
        if not self.clips:
            from stylization.errors import DataError

            raise DataError(f"no {split!r} clip has the {need} frames a window with ±{self.max_offset} offsets needs",
                            self.corpus.root)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips) * self.items_per_clip

    def __getitem__(self, index: int) -> dict:
        rec = self.clips[index // self.items_per_clip]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        crops, ceps = self._cache.get_or_make(rec.id, lambda: self._decode(rec))
        k = self.max_offset
        # window i's audio at offset o starts at MFCC step 4(i + o); every offset must fit in the sound
        last = min(rec.n_frames - VIDEO_WINDOW_FRAMES,
                   (ceps.shape[1] - AUDIO_WINDOW_STEPS) // MFCC_STEPS_PER_FRAME - k)
        start = int(rng.integers(k, max(k, last) + 1))
        window = crops[start:start + VIDEO_WINDOW_FRAMES]  # [5, S, S, 3]
        video = torch.from_numpy(np.ascontiguousarray(window)).permute(3, 0, 1, 2).float()
        steps = [(start + o) * MFCC_STEPS_PER_FRAME for o in range(-k, k + 1)]
        audio = torch.from_numpy(np.stack([ceps[:, s:s + AUDIO_WINDOW_STEPS] for s in steps]))[:, None]
        return {"video": video, "audio": audio, "target": k}

    def _decode(self, rec) -> tuple[np.ndarray, np.ndarray]:
        """A clip's frames cropped as the evaluation crops them (BGR uint8 [T, S, S, 3]) and its MFCC [13, M]."""
        crops = face_crops(read_video(self.corpus.path(rec, "video")), None, self.frame_size, self.lower_half)
        return crops, mfcc(int16_scale(self.corpus.load_audio(rec))).T.astype(np.float32)


def offset_logits(net: nn.Module, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Video windows [B, 3, 5, S, S] and audio windows [B, O, 1, 13, 20] -> logits [B, O]: minus the
    euclidean distance between each video embedding and its O audio embeddings."""
    b, o = audio.shape[:2]
    v = net.embed_video(video)  # [B, D]
    a = net.embed_audio(audio.flatten(0, 1)).view(b, o, -1)  # [B, O, D]
    return -(v[:, None] - a).norm(dim=-1)


class SyncNetStage(TrainingStage):
    def build_modules(self) -> dict[str, nn.Module]:
        return {"syncnet": instantiate(self.cfg.model)}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        return {"syncnet": torch.optim.Adam(modules["syncnet"].parameters(), lr=float(s.lr), betas=tuple(s.betas))}

    def split_dataset(self, split: str) -> SyncWindowDataset:
        s, d = self.cfg.stage, self.cfg.data
        m = self.cfg.model
        return SyncWindowDataset(d.root, split, int(m.frame_size), int(s.max_offset), int(s.items_per_clip),
                                 int(self.cfg.seed), d.speakers, lower_half=m.get("input_crop", "face") == "lower_half")

    def training_step(self, batch, ctx: StepContext):
        with ctx.autocast():
            logits = offset_logits(ctx.modules["syncnet"], batch["video"], batch["audio"])
        loss = F.cross_entropy(logits.float(), batch["target"])
        grad_norm = ctx.optimize("syncnet", loss)
        accuracy = (logits.argmax(1) == batch["target"]).float().mean()
        return {"loss": loss.detach(), "offset_accuracy": accuracy, "grad_norm": grad_norm}

    def validation_step(self, batch, ctx: StepContext):
        logits = offset_logits(ctx.eval_modules["syncnet"], batch["video"], batch["audio"]).float()
        target = batch["target"]
        in_sync = -logits.gather(1, target[:, None])[:, 0]
        off = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
        return {"loss": F.cross_entropy(logits, target), "offset_accuracy": (logits.argmax(1) == target).float().mean(),
                "distance_in_sync": in_sync.mean(), "distance_off_sync": (-logits)[off].mean()}
