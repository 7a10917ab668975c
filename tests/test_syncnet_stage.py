"""stage=syncnet: the training windows are the evaluation's windows, the loss ranks offsets, a run
trains as documented and loads wherever a SyncNet is asked for (benchmark, eval_syncnet)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, read_manifest, train_as_documented

from stylization.data.corpus import Corpus
from stylization.data.video import read_video
from stylization.syncnet.evaluate import audio_windows, face_crops
from stylization.syncnet.model import SyncNet, last_video_kernel
from stylization.syncnet.stage import SyncWindowDataset, offset_logits


def test_the_official_layout_is_unchanged_and_the_small_one_runs():
    official = SyncNet(1024)
    assert [(k, list(v.shape)) for k, v in official.state_dict().items()] == read_manifest("syncnet_v2.tsv")
    assert last_video_kernel(224) == 6 and last_video_kernel(112) == 2
    small = SyncNet(256, width=0.25, frame_size=112).eval()
    with torch.no_grad():
        v = small.embed_video(torch.rand(2, 3, 5, 112, 112) * 255)
        a = small.embed_audio(torch.randn(2, 1, 13, 20))
    assert v.shape == a.shape == (2, 256)
    with pytest.raises(ValueError, match="112"):
        small.embed_video(torch.zeros(1, 3, 5, 224, 224))


def test_a_training_item_holds_the_evaluation_windows(synthetic_corpus):
    """Item = video frames i..i+4 cropped as the evaluation crops them, and the audio windows at
    offsets -K..K, the in-sync one (the target) equal to the evaluation's audio window i."""
    ds = SyncWindowDataset(str(synthetic_corpus), "train", frame_size=112, max_offset=4, items_per_clip=2, seed=3)
    item = ds[1]
    assert item["video"].shape == (3, 5, 112, 112) and item["audio"].shape == (9, 1, 13, 20)
    assert item["target"] == 4
    rec = ds.clips[0]
    corpus = Corpus(synthetic_corpus)
    frames = read_video(corpus.path(rec, "video"))
    crops = torch.from_numpy(face_crops(frames, None, 112)).permute(3, 0, 1, 2).float()  # [3, T, S, S]
    starts = [i for i in range(4, rec.n_frames - 5) if torch.equal(crops[:, i:i + 5], item["video"])]
    assert starts, "the video window is not a run of the clip's cropped frames"
    start = starts[0]
    reference = audio_windows(corpus.load_audio(rec), start + 1)[start]  # [1, 13, 20]
    torch.testing.assert_close(item["audio"][4], reference)
    again = SyncWindowDataset(str(synthetic_corpus), "train", frame_size=112, max_offset=4, items_per_clip=2, seed=3)
    assert torch.equal(again[1]["video"], item["video"])  # a function of (seed, epoch, index)


def test_the_logits_are_minus_the_distances():
    net = SyncNet(32, width=0.125, frame_size=112).eval()
    video, audio = torch.rand(2, 3, 5, 112, 112) * 255, torch.randn(2, 3, 1, 13, 20)
    with torch.no_grad():
        logits = offset_logits(net, video, audio)
        expected = -(net.embed_video(video)[:, None] - net.embed_audio(audio.flatten(0, 1)).view(2, 3, -1)).norm(dim=-1)
    torch.testing.assert_close(logits, expected)


def test_a_run_trains_and_is_a_syncnet_everywhere(synthetic_corpus, tmp_path):
    from stylization.runs import load_syncnet

    run_dir = tmp_path / "syncnet"
    train_as_documented(["stage=syncnet", "model=syncnet_small", "stage.batch_size=4", "stage.max_offset=4",
                         "trainer.num_workers=0", "trainer.val_batches=1", "trainer.val_every_steps=2",
                         "trainer.checkpoint_every_steps=2"], synthetic_corpus, run_dir,
                        {"model.width": 0.25, "model.frame_size": 112, "trainer.max_minutes": 10}, steps=2)
    net = load_syncnet(run_dir)
    assert isinstance(net, SyncNet) and not net.training and net.frame_size == 112
    res = subprocess.run([sys.executable, "scripts/eval_syncnet.py", f"syncnet={run_dir}", f"data.root={synthetic_corpus}",
                          "max_clips=2", "device=cpu"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["clips"] == 2 and 0 <= out["ranked"] <= 1 and out["shift"] == 5
    assert np.isfinite(out["sync_lse_d"]) and np.isfinite(out["shifted_distance_0"])
    torch.save(SyncNet(1024).state_dict(), tmp_path / "syncnet_v2.model")  # the released file still loads
    assert load_syncnet(tmp_path / "syncnet_v2.model").frame_size == 224


def test_the_expert_loss_trains_frames_not_the_expert():
    """SyncExpertLoss: gradients reach the generated frames, never the frozen SyncNet, and its logits
    are the stage's (RGB [-1, 1] frames converted to the expert's BGR 0..255 input)."""
    from stylization.syncnet.expert import SyncExpertLoss

    torch.manual_seed(0)
    net = SyncNet(32, width=0.125, frame_size=112)
    expert = SyncExpertLoss(net).train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    frames = (torch.rand(2, 5, 3, 64, 64) * 2 - 1).requires_grad_()
    audio, target = torch.randn(2, 3, 1, 13, 20), torch.tensor([1, 1])
    loss = expert(frames, audio, target)
    loss.backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    bgr = torch.nn.functional.interpolate(frames.detach().flatten(0, 1), size=(112, 112), mode="bilinear")
    bgr = ((bgr.flip(1) + 1) * 127.5).view(2, 5, 3, 112, 112).transpose(1, 2)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(offset_logits(net, bgr, audio), target)
    torch.testing.assert_close(loss.detach(), expected)
