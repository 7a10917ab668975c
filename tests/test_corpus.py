"""The processed-clip format and the window dataset over it."""

import json
import shutil

import numpy as np
import pytest
import torch

from stylization.data.audio import load_audio, mel_windows, melspectrogram
from stylization.data.corpus import Corpus, assign_speaker_split, check_speaker_disjoint, read_index
from stylization.data.datasets import ClipWindowDataset, blink_values
from stylization.data.face_model import stand_in_face_model
from stylization.errors import DataError


def test_corpus_loads_and_files_agree(tiny_corpus):
    corpus = Corpus(tiny_corpus)
    assert len(corpus.records) == 6 and corpus.speakers("test") == ["spk_c"]
    rec = corpus.by_id["spk_a_happy"]
    coeffs, lm = corpus.load_coeffs(rec), corpus.load_landmarks(rec)
    assert coeffs.shape == (48, 260) and lm.shape == (48, 68, 2)
    expected = stand_in_face_model().landmarks_from_coeffs(torch.from_numpy(coeffs), 32).numpy()
    np.testing.assert_allclose(lm, expected, atol=1e-4)
    assert corpus.load_audio(rec).size == 48 * 640
    assert all(corpus.check_clip(r) is None for r in corpus.records)


def test_index_errors_name_file_and_line(tmp_path):
    with pytest.raises(DataError, match="no index.jsonl"):
        read_index(tmp_path)
    (tmp_path / "index.jsonl").write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"index.jsonl:1.*lacks fields"):
        read_index(tmp_path)
    (tmp_path / "index.jsonl").write_text("\n{oops\n")
    with pytest.raises(DataError, match="line 2 is not JSON"):
        read_index(tmp_path)


def test_window_items_are_aligned(tiny_corpus):
    ds = ClipWindowDataset(tiny_corpus, split="train", window_frames=16, seed=3, with_semantic=True, with_frames=True)
    assert len(ds) == 4 * 3  # 4 train clips x 48 // 16 slots
    item = ds[5]
    corpus = ds.corpus
    rec = corpus.by_id[item["clip_id"]]
    start = item["start"]
    coeffs = corpus.load_coeffs(rec)
    np.testing.assert_array_equal(item["coeffs"].numpy(), coeffs[start:start + 16])
    np.testing.assert_array_equal(item["exp"].numpy(), coeffs[start:start + 16, 80:144])
    mel = mel_windows(melspectrogram(load_audio(corpus.path(rec, "audio"))), np.arange(start, start + 16))
    np.testing.assert_array_equal(item["mel"].numpy(), mel)
    assert item["semantic"].shape == (16, 73, 27)
    np.testing.assert_array_equal(item["semantic"][:, :64, 13].numpy(), coeffs[start:start + 16, 80:144])
    assert item["frames"].shape == (16, 3, 32, 32) and -1 <= item["frames"].min() and item["frames"].max() <= 1
    assert item["text"] in rec.texts and item["blink"].shape == (16,)
    # the source expression is a frame of the same speaker's neutral clip
    neutral = corpus.load_coeffs(corpus.by_id[f"{rec.speaker}_neutral"])[:, 80:144]
    if rec.emotion != "neutral":
        assert any(np.array_equal(item["source_exp"].numpy(), row) for row in neutral)


def test_sampling_is_deterministic_under_a_seed(tiny_corpus):
    a = ClipWindowDataset(tiny_corpus, window_frames=16, seed=7, with_mel=False)
    b = ClipWindowDataset(tiny_corpus, window_frames=16, seed=7, with_mel=False)
    starts = lambda ds: [(ds[i]["clip_id"], ds[i]["start"], ds[i]["text"]) for i in range(len(ds))]
    assert starts(a) == starts(b)
    a.set_epoch(1)
    assert starts(a) != starts(b)
    loader = torch.utils.data.DataLoader(b, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch["exp"].shape == (4, 16, 64) and len(batch["clip_id"]) == 4
    assert [int(s) for s in batch["start"]] == [b[i]["start"] for i in range(4)]


def test_short_and_damaged_clips_are_reported(tiny_corpus, tmp_path, caplog):
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    with caplog.at_level("WARNING"):
        ds = ClipWindowDataset(root, window_frames=40, stride_frames=8)
    assert len(ds.clips) == 4 and "shorter" not in caplog.text
    with caplog.at_level("WARNING"):
        with pytest.raises(DataError, match="no usable clip"):
            ClipWindowDataset(root, window_frames=49)
    assert "spk_a_neutral" in caplog.text and "shorter than 49" in caplog.text
    np.save(root / "clips" / "spk_b_happy" / "coeffs.npy", np.zeros((10, 260), np.float32))
    (root / "clips" / "spk_a_neutral" / "audio.wav").unlink()
    with pytest.raises(DataError) as info:
        ClipWindowDataset(root, window_frames=16)
    assert "spk_b_happy" in str(info.value) and "spk_a_neutral" in str(info.value)
    caplog.clear()
    with caplog.at_level("WARNING"):
        ds = ClipWindowDataset(root, window_frames=16, skip_damaged=True)
    assert {r.id for r in ds.clips} == {"spk_a_happy", "spk_b_neutral"}
    assert "spk_b_happy" in caplog.text


def test_speaker_splits(tiny_corpus):
    records = Corpus(tiny_corpus).records
    check_speaker_disjoint(records)
    resplit = assign_speaker_split(records, ["spk_a"])
    assert {r.speaker for r in resplit if r.split == "test"} == {"spk_a"}
    mixed = [r if r.id != "spk_b_happy" else type(r)(**{**r.__dict__, "split": "test"}) for r in records]
    with pytest.raises(DataError, match="spk_b"):
        check_speaker_disjoint(mixed)
    with pytest.raises(DataError, match="nobody"):
        assign_speaker_split(records, ["nobody"])
    ds = ClipWindowDataset(tiny_corpus, window_frames=16, speakers=["spk_b"], with_mel=False)
    assert {r.speaker for r in ds.clips} == {"spk_b"}


def test_blink_values_detect_closed_eyes():
    lm = np.tile(stand_in_face_model().landmarks(*(torch.zeros(n) for n in (80, 64, 3, 3)), 256).numpy(), (10, 1, 1))
    lm[4, [37, 38, 43, 44], 1] = lm[4, [41, 40, 47, 46], 1]  # frame 4: upper lids on the lower lids
    blink = blink_values(lm)
    assert blink[4] > 0.9 and np.all(np.delete(blink, 4) < 0.05)


def test_inspect_corpus_script(tiny_corpus, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    script = str(REPO / "scripts" / "inspect_corpus.py")
    ok = subprocess.run([sys.executable, script, str(tiny_corpus), "--window-frames", "40"], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert summary == {"clips": 6, "speakers": 3, "damaged": 0, "short": 0, "speaker_disjoint": True}
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    (root / "clips" / "spk_c_happy" / "landmarks.npy").unlink()
    bad = subprocess.run([sys.executable, script, str(root)], capture_output=True, text=True)
    assert bad.returncode == 1 and "damaged spk_c_happy: missing landmarks file" in bad.stdout
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
