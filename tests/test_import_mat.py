"""scripts/export_mat.py and scripts/import_mat.py: a corpus clip out as a StyleTalk / SadTalker
3DMM .mat at 30 fps and back in as a clip (both the 257- and the 73-column forms); bad input is one
``error:`` line and leaves the corpus as it was."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import REPO
from scipy.io import loadmat, savemat

from stylization.constants import SAMPLES_PER_FRAME
from stylization.data.corpus import Corpus
from stylization.data.video import probe_video, resample_indices
from stylization.errors import ConfigError, DataError
from stylization.preprocess import mat_clips
from stylization.preprocess.mat_clips import ImportOptions, import_clip

SOURCE = "spk_a_happy"  # the tiny corpus's clip that goes out and comes back: 48 frames at 25 fps
N = 48
# Frame k of the round trip (25 -> 30 -> 25 fps) shows source frame BACK[k].
BACK = resample_indices(np.arange(N) / 25, 25, 30)[resample_indices(np.arange(58) / 30, 30, 25)]


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def summary(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def tree(root) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (what a failed import must leave untouched)."""
    found = {}
    for base, _, names in os.walk(root):
        for name in names:
            path = os.path.join(base, name)
            found[os.path.relpath(path, root)] = open(path, "rb").read()
    return found


def load_script(name: str):
    """scripts/<name>.py as a module (its functions run in this process: a subprocess costs seconds of imports)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory):
    """The clip written at 30 fps by scripts/export_mat.py (its run() on its real config, composed from
    the command line's words), and a SadTalker-style copy (``coeff_3dmm`` [T, 73] only)."""
    from hydra import compose, initialize_config_dir

    from stylization.cli import free_text_argv

    folder = tmp_path_factory.mktemp("mat")
    full = folder / "sub dir" / "clip.mat"  # a folder the command creates, a space in the path
    export = load_script("export_mat")
    argv = free_text_argv(["export_mat.py", f"clip={tiny_corpus / 'clips' / SOURCE}", f"out={full}", "fps=30"],
                          export.VERBATIM_KEYS)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="export_mat", overrides=argv[1:])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        export.run(cfg)
    info = json.loads(printed.getvalue().strip().splitlines()[-1])
    assert info["frames"] == 58 and info["fps"] == 30  # 1.92 s at 30 fps
    semantic = folder / "sadtalker.mat"
    savemat(semantic, {"coeff_3dmm": loadmat(full)["coeff_3dmm"]})
    return full, semantic


@pytest.fixture(scope="module")
def imported(tiny_corpus, exported, tmp_path_factory):
    """A new corpus root holding the 257-column file (the command, with the clip's video) and the
    73-column one (in-process, stand-in frames)."""
    full, semantic = exported
    root = tmp_path_factory.mktemp("imported") / "corpus"
    clip = tiny_corpus / "clips" / SOURCE
    info = summary(script("scripts/import_mat.py", f"mat={full}", f"audio={clip / 'audio.wav'}", f"out={root}",
                          "fps=30", f"video={clip / 'video.mp4'}", "id=001", "speaker=spk_a", "emotion=happy",
                          "texts=A person talks, smiling | Someone grins"))
    assert info == {"out": str(root), "id": "001", "n_frames": N, "seconds": 1.92, "video": "file", "texts": 2,
                    "replaced": False}
    info = import_clip(root, semantic, clip / "audio.wav", ImportOptions(fps=30, speaker="spk_a"))
    assert info["id"] == "sadtalker" and info["video"] == "stand_in" and info["texts"] >= 1
    return root


def test_the_export_has_every_projects_keys_at_30_fps(exported, tiny_corpus):
    mat = loadmat(exported[0])
    assert mat["coeff"].shape == (58, 257) and mat["full_3dmm"].shape == (58, 257)
    assert mat["coeff_3dmm"].shape == (58, 73) and mat["transform_params"].shape == (58, 5)
    assert (mat["transform_params"][:, :2] == 32).all()  # the tiny corpus's 32 px frames
    ours = np.load(tiny_corpus / "clips" / SOURCE / "coeffs.npy")
    np.testing.assert_array_equal(mat["coeff"], ours[resample_indices(np.arange(N) / 25, 25, 30), :257])


def test_both_forms_come_back_at_25_fps_with_their_coefficients(imported, tiny_corpus):
    ours = np.load(tiny_corpus / "clips" / SOURCE / "coeffs.npy")
    assert (BACK == np.arange(N)).mean() > 0.75  # most frames come back as themselves, none from far away
    assert np.abs(BACK - np.arange(N)).max() <= 1
    corpus = Corpus(imported)
    full, semantic = corpus.by_id["001"], corpus.by_id["sadtalker"]
    assert full.n_frames == semantic.n_frames == N
    np.testing.assert_array_equal(corpus.load_coeffs(full), ours[BACK])  # all 260 columns, crop included
    back = corpus.load_coeffs(semantic)
    for part in (slice(80, 144), slice(224, 227), slice(254, 260)):  # exp, angle, trans, crop
        np.testing.assert_array_equal(back[:, part], ours[BACK, part])
    assert not back[:, :80].any() and not back[:, 144:224].any() and not back[:, 227:254].any()
    # The face model's projection of the same coefficients, in the 256 px frame (the tiny corpus's is 32 px).
    tiny = np.load(tiny_corpus / "clips" / SOURCE / "landmarks.npy")
    np.testing.assert_allclose(corpus.load_landmarks(full), tiny[BACK] * 256 / 32, atol=1e-3)


def test_the_clips_carry_the_audio_video_and_labels(imported, tiny_corpus):
    corpus = Corpus(imported)
    original, _ = soundfile.read(tiny_corpus / "clips" / SOURCE / "audio.wav", dtype="float32")
    for rec in corpus.records:
        wav = corpus.load_audio(rec)
        assert wav.size == N * SAMPLES_PER_FRAME  # the coefficients' 1.92 s
        np.testing.assert_allclose(wav, original, atol=2e-4)
        info = probe_video(corpus.path(rec, "video"))
        assert (info.width, info.height, round(info.fps)) == (256, 256, 25)
        assert info.n_frames in (0, N)
        assert rec.split == "train" and rec.speaker == "spk_a"
    full, semantic = corpus.by_id["001"], corpus.by_id["sadtalker"]
    assert (full.emotion, full.level, full.texts) == ("happy", 1, ("A person talks, smiling", "Someone grins"))
    assert (semantic.emotion, semantic.level) == ("unlabelled", 0) and all(semantic.texts)
    meta = json.loads((imported / "clips" / "001" / "record.json").read_text())
    assert meta["dataset"] == "mat3dmm" and meta["mat_fps"] == 30 and meta["frames_from"] == "video"
    assert meta["crop_box"] == [16, 16, 32] and meta["texts"] == list(full.texts)  # the 32 px source's square
    assert not (imported / ".partial").exists()


def test_inspect_corpus_passes_the_result(imported, monkeypatch, capsys):
    """scripts/inspect_corpus.py's main, in this process."""
    monkeypatch.setattr(sys, "argv", ["inspect_corpus.py", str(imported)])
    with pytest.raises(SystemExit) as exit_:
        load_script("inspect_corpus").main()
    assert exit_.value.code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["clips"] == 2 and report["damaged"] == 0 and report["speakers"] == 1


def test_a_bad_file_is_one_error_line_and_no_corpus(tmp_path, tiny_corpus):
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file")
    root = tmp_path / "corpus"
    out = script("scripts/import_mat.py", f"mat={junk}", f"audio={tiny_corpus / 'clips' / SOURCE / 'audio.wav'}",
                 f"out={root}")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(junk) in errors[0] and "not a readable .mat" in errors[0]
    assert not root.exists()


def _damaged_copy(tmp_path, name: str, **arrays) -> str:
    path = tmp_path / name
    savemat(path, arrays)
    return str(path)


@pytest.mark.parametrize("case", ["missing mat", "wide", "no frames", "missing audio", "short audio", "wrong fps",
                                  "short video", "taken id", "bad emotion"])
def test_bad_input_names_the_file_and_changes_nothing(case, imported, exported, tiny_corpus, tmp_path):
    semantic = exported[1]
    clip = tiny_corpus / "clips" / SOURCE
    audio, mat, options = str(clip / "audio.wav"), str(semantic), ImportOptions(fps=30, clip_id="new")
    expect, named = DataError, None
    if case == "missing mat":
        mat = named = str(tmp_path / "none.mat")
    elif case == "wide":
        mat = named = _damaged_copy(tmp_path, "wide.mat", coeff_3dmm=np.zeros((58, 70)))
    elif case == "no frames":
        mat = named = _damaged_copy(tmp_path, "empty.mat", coeff=np.zeros((0, 257)))
    elif case == "missing audio":
        audio = named = str(tmp_path / "none.wav")
    elif case in ("short audio", "wrong fps"):
        if case == "short audio":  # 1.2 s of speech for 1.92 s of coefficients
            audio = named = str(tmp_path / "short.wav")
            soundfile.write(audio, soundfile.read(clip / "audio.wav")[0][:19200], 16000)
        else:  # a 30 fps file read as 25 fps lasts 2.32 s
            options, named = ImportOptions(fps=25, clip_id="new"), audio
    elif case == "short video":
        options = ImportOptions(fps=30, clip_id="new", video=str(tmp_path / "short.mp4"))
        named = options.video
        from stylization.data.video import write_video

        write_video(named, np.zeros((40, 32, 32, 3), np.uint8))
    elif case == "taken id":
        options, expect = ImportOptions(fps=30, clip_id="001"), ConfigError
    elif case == "bad emotion":
        options, expect = ImportOptions(fps=30, clip_id="new", emotion="joyful"), ConfigError
    before = tree(imported)
    with pytest.raises(expect) as err:
        import_clip(imported, mat, audio, options)
    if named:
        assert str(err.value).startswith(named + ": ")
    if case in ("short audio", "wrong fps"):
        assert "is fps= the .mat's frame rate?" in str(err.value)
    assert tree(imported) == before


def test_a_failed_write_leaves_the_corpus_as_it_was(imported, exported, tiny_corpus, tmp_path, monkeypatch):
    import stylization.data.video as video

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(video, "write_video", broken)
    audio = tiny_corpus / "clips" / SOURCE / "audio.wav"
    before = tree(imported)
    with pytest.raises(OSError):
        import_clip(imported, exported[1], audio, ImportOptions(fps=30, clip_id="new"))
    assert tree(imported) == before and not (imported / ".partial").exists()
    with pytest.raises(OSError):
        import_clip(tmp_path / "fresh", exported[1], audio, ImportOptions(fps=30))
    assert not (tmp_path / "fresh").exists()


def test_overwrite_replaces_a_clip(imported, exported, tiny_corpus, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(imported, root)
    staged = root / ".partial" / "0of1-3"  # a preprocessing run's clip in flight: not the import's to remove
    staged.mkdir(parents=True)
    audio = tiny_corpus / "clips" / SOURCE / "audio.wav"
    info = import_clip(root, exported[1], audio, ImportOptions(fps=30, clip_id="001", speaker="spk_a",
                                                               texts=("Calm.",), overwrite=True))
    assert info["replaced"]
    corpus = Corpus(root)
    assert [r.id for r in corpus.records] == ["sadtalker", "001"] and corpus.by_id["001"].texts == ("Calm.",)
    assert corpus.check_clip(corpus.by_id["001"]) is None
    assert os.listdir(root / ".partial") == ["0of1-3"]
    assert mat_clips.split_texts("a, b | c") == ("a, b", "c")


def test_phonemes_go_out_and_come_back_with_the_clip(tiny_corpus, tmp_path):
    """A clip with phonemes.npy: export_mat writes StyleTalk's <name>_seq.json (one index per .mat row,
    30 fps); import_mat phonemes= reads it back to the clip's 25 fps frames (the round trip's frames)."""
    import shutil

    from stylization.preprocess.mat_clips import export_clip

    clip = tmp_path / "src" / SOURCE
    shutil.copytree(tiny_corpus / "clips" / SOURCE, clip)
    labels = np.random.default_rng(0).integers(0, 41, N)
    np.save(clip / "phonemes.npy", labels)
    info = export_clip(clip, tmp_path / "out" / "clip.mat", 30.0)
    seq = json.loads((tmp_path / "out" / "clip_seq.json").read_text())
    assert info["phonemes"] == str(tmp_path / "out" / "clip_seq.json") and len(seq) == info["frames"] == 58
    root = tmp_path / "corpus"
    import_clip(root, tmp_path / "out" / "clip.mat", clip / "audio.wav",
                ImportOptions(fps=30, speaker="spk_a", phonemes=str(tmp_path / "out" / "clip_seq.json")))
    corpus = Corpus(root)
    assert (corpus.load_phonemes(corpus.records[0]) == labels[BACK]).all()
    (tmp_path / "short.json").write_text(json.dumps(seq[:20]))
    with pytest.raises(DataError, match="must cover them"):
        import_clip(tmp_path / "c2", tmp_path / "out" / "clip.mat", clip / "audio.wav",
                    ImportOptions(fps=30, speaker="spk_a", phonemes=str(tmp_path / "short.json")))
