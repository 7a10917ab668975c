"""stage=styletalk: the items (style, positive and negative clips), the losses against independent
references (scikit-image's SSIM, the triplet by hand), the two phases (discriminators first, then the
generator), the run evaluated with eval_motion's JSON and driving infer.py from a style clip."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, train_as_documented

from stylization.data.corpus import Corpus, write_index
from stylization.data.phonemes import phoneme_windows
from stylization.data.style_clips import StyleClipDataset, crop_style
from stylization.styletalk.discriminators import SequencePatchDiscriminator, SyncDiscriminator, mouth_windows
from stylization.styletalk.losses import sequence_ssim, triplet_loss


@pytest.fixture(scope="module")
def phoneme_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus with two clips per (speaker, emotion) and a phonemes file per clip (labels that
    follow the mouth: SIL where it is closed, a vowel where it is open)."""
    root = tmp_path_factory.mktemp("st") / "corpus"
    shutil.copytree(tiny_corpus, root)
    corpus = Corpus(root)
    records = []
    for rec in corpus.records:
        for suffix in ("", "_b"):
            files = {kind: path.replace(rec.id + "/", rec.id + suffix + "/") for kind, path in rec.files.items()}
            coeffs = corpus.load_coeffs(rec)
            if suffix:  # a second clip of the style: the same sound, its expressions a little different
                (root / files["coeffs"]).parent.mkdir()
                for kind in files:
                    shutil.copy(root / rec.files[kind], root / files[kind])
                coeffs[:, 82:144] += 0.01
                np.save(root / files["coeffs"], coeffs)
            files["phonemes"] = files["coeffs"].replace("coeffs.npy", "phonemes.npy")
            np.save(root / files["phonemes"], np.where(coeffs[:, 80] > 0.3, 0, 31).astype(np.int64))
            records.append(type(rec)(**{**rec.__dict__, "id": rec.id + suffix, "files": files}))
    write_index(root, records)
    return root


def test_ssim_along_time_is_scikit_images():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    x = rng.normal(size=40).cumsum() / 5
    y = x + 0.3 * rng.normal(size=40)
    ours = sequence_ssim(torch.tensor(x)[None, :, None], torch.tensor(y)[None, :, None], data_range=2.0)
    ref = structural_similarity(x, y, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                full=True)[1][5:-5].mean()  # the valid positions of an 11-frame window
    assert float(ours) == pytest.approx(ref, abs=1e-6)


def test_triplet_and_discriminator_shapes():
    a, p, n = torch.zeros(2, 3), torch.tensor([[3.0, 4, 0], [0, 0, 1]]), torch.tensor([[0.0, 0, 1], [0, 0, 9]])
    assert float(triplet_loss(a, p, n, 5.0)) == pytest.approx(((5 - 1 + 5) + 0) / 2)  # second: 1 - 9 + 5 < 0
    mouth = torch.arange(4.0)[None, :, None, None].expand(1, 4, 20, 3)
    win = mouth_windows(mouth, 5)  # [1, 4, 5, 20, 3]: frame 0's window repeats frame 0 before it
    assert win.shape == (1, 4, 5, 20, 3) and win[0, 0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    p_sync = SyncDiscriminator(frames=5, dim=16, width=16)(win[0], torch.from_numpy(phoneme_windows(np.arange(4))))
    assert p_sync.shape == (4,) and bool(((p_sync >= 0) & (p_sync <= 1)).all())
    assert SequencePatchDiscriminator(64, 16, 3, outputs=7)(torch.zeros(2, 64, 64)).shape == (2, 7, 8)


def test_items_pair_a_window_with_clips_of_its_style_and_of_another(phoneme_corpus):
    ds = StyleClipDataset(phoneme_corpus, "train", window_frames=32, style_frames=40, hard_negative=1.0, seed=1)
    corpus = Corpus(phoneme_corpus)
    exp_of = {r.id: corpus.load_coeffs(r)[:, 80:144] for r in ds.clips}
    item = ds[3]
    assert item["phonemes"].shape == (32, 11) and item["style_exp"].shape == (40, 64)
    assert not item["style_mask"].any()  # 48-frame clips cropped to 40

    def source(exp, mask):
        clip = exp[~mask].numpy()
        return [cid for cid, e in exp_of.items()
                if any(np.array_equal(e[i: i + len(clip)], clip) for i in range(len(e) - len(clip) + 1))]

    own = item["clip_id"]
    style = source(item["style_exp"], item["style_mask"])
    negative = source(item["negative_exp"], item["negative_mask"])
    style_of = {r.id: (r.speaker, r.emotion) for r in ds.clips}
    target = (item["speaker"], item["emotion"])
    assert style and own not in style and all(style_of[c] == target for c in style)
    assert negative and all(style_of[c][0] == item["speaker"] and style_of[c] != target for c in negative)
    assert ds.styles[item["style_label"]] == (item["speaker"], item["emotion"])
    padded, mask = crop_style(np.ones((5, 64), np.float32), 8, None)
    assert mask.tolist() == [False] * 5 + [True] * 3 and padded[5:].sum() == 0


def test_phases_train_what_they_should_and_the_run_evaluates_and_drives_infer(phoneme_corpus, tmp_path):
    run_dir = tmp_path / "styletalk"
    small = ["stage=styletalk", "model=styletalk_small", "stage.batch_size=4", "stage.clip_frames=32",
             "stage.style_frames=48", "model.generator.max_style_frames=48", "stage.pretrain_steps=2",
             "trainer.num_workers=0", "trainer.val_batches=1", "trainer.val_every_steps=4",
             "trainer.checkpoint_every_steps=2", "trainer.keep_checkpoints=0"]
    train_as_documented(small, phoneme_corpus, run_dir, {"stage.loss.rec": 88.0, "trainer.max_minutes": 10}, steps=4)
    states = {step: torch.load(run_dir / "checkpoints" / f"step_{step:09d}.pt", weights_only=False) for step in (2, 4)}

    def adam_steps(state, name):
        return {int(s["step"]) for s in state["optimizers"][name]["state"].values()}

    assert adam_steps(states[2], "pretrain") == {2} and adam_steps(states[2], "generator") == set()
    assert adam_steps(states[4], "pretrain") == {2} and adam_steps(states[4], "generator") == {2}
    assert adam_steps(states[4], "temporal_discriminator") == {2}

    res = subprocess.run([sys.executable, "scripts/eval_motion.py", f"run={run_dir}", f"data.root={phoneme_corpus}",
                          "split=test", "device=cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("m_lmd", "f_lmd", "still_m_lmd", "still_f_lmd", "wrong_style_f_lmd", "audio_only_f_lmd"):
        assert np.isfinite(out[key]), key
    assert out["clips"] == 4

    clip = Corpus(phoneme_corpus).clips("test")[0]
    coeffs = str(phoneme_corpus / clip.files["coeffs"])
    audio = str(phoneme_corpus / clip.files["audio"])
    common = [sys.executable, "infer.py", f"styletalk={run_dir}", f"audio={audio}", "device=cpu"]
    res = subprocess.run(common + [f"style_clip={coeffs}", f"out={tmp_path / 'st.mp4'}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    written = np.load(tmp_path / "st.npy")
    assert written.shape[1] == 260 and np.abs(written[:, 80:144]).sum() > 0 and (tmp_path / "st.mp4").exists()
    from hydra import compose, initialize_config_dir

    from stylization.errors import ConfigError
    from stylization.pipeline import Job, Pipeline

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[f"styletalk={run_dir}"])
    pipeline = Pipeline(cfg, torch.device("cpu"))  # loads no model before a job needs one
    with pytest.raises(ConfigError, match="not both"):
        pipeline.read_inputs(Job(audio=audio, out=str(tmp_path / "both.mp4"), text="A calm voice.", style_clip=coeffs))
