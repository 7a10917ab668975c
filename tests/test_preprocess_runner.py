"""The preprocessing driver's small parts (stylization/preprocess/runner.py)."""

import json

import pytest

from stylization.errors import DataError
from stylization.preprocess import runner
from stylization.preprocess.sources import RawClip


def test_splits_files_and_default_test_speakers(tmp_path):
    (tmp_path / "test.json").write_text(json.dumps(["M003#angry#level_1#001", " W009#sad#level_3#002"]))
    assert runner.read_splits_file(str(tmp_path / "test.json")) == {"M003#angry#level_1#001", "W009#sad#level_3#002"}
    (tmp_path / "test.txt").write_text("\ufeffM003#angry#level_1#001\n\n  RD_Radio11_001 \n")
    assert runner.read_splits_file(str(tmp_path / "test.txt")) == {"M003#angry#level_1#001", "RD_Radio11_001"}
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(DataError, match="not a JSON list"):
        runner.read_splits_file(str(tmp_path / "bad.json"))
    with pytest.raises(DataError, match="not found"):
        runner.read_splits_file(str(tmp_path / "none.txt"))
    assert runner.default_test_speakers("mead", ["M003", "M005", "W015"]) == ["M003", "W015"]
    videos = [f"RD_Radio{i}" for i in range(30)]
    test = runner.default_test_speakers("hdtf", videos)
    assert 0 < len(test) < 10 and test == runner.default_test_speakers("hdtf", list(reversed(videos)))[::-1]
    assert len(runner.default_test_speakers("folder", ["a", "b"])) == 1


def test_an_unexpected_error_on_one_clip_is_a_logged_failure_not_a_crash(tmp_path, monkeypatch):
    class Broken:
        def __call__(self, clip):
            raise RuntimeError("boom")

    monkeypatch.setattr(runner, "_WORKER", Broken())
    (tmp_path / "failures").mkdir()
    clip = RawClip(id="M003#angry#level_1#001", dataset="mead", speaker="M003", emotion="angry", level=1,
                   video="/nowhere.mp4", audio=None, start=None, end=None)
    clip_id, reason, kind, frames, _ = runner._work((clip, str(tmp_path), "0of1-0"))
    assert (clip_id, frames) == (clip.id, 0) and reason == "internal error (RuntimeError: boom)"
    assert kind == "internal error"  # what the summary counts it under
    marker = json.loads((tmp_path / "failures" / "M003_angry_level_1_001.json").read_text())
    assert marker["reason"] == reason and not (tmp_path / "clips").exists()


def test_a_data_error_is_counted_by_its_kind_not_its_file(tmp_path, monkeypatch):
    """The summary groups failures by what went wrong; the file path stays in failures.jsonl."""
    from stylization.errors import DataError
    from stylization.preprocess import runner
    from stylization.preprocess.sources import RawClip

    class Unreadable:
        def __call__(self, clip):
            raise DataError("not a readable video (moov atom not found)", clip.video)

    monkeypatch.setattr(runner, "_WORKER", Unreadable())
    (tmp_path / "failures").mkdir()
    clip = RawClip(id="RD_Radio7_000", dataset="hdtf", speaker="RD_Radio7", emotion="unlabelled", level=0,
                   video="/raw/RD_Radio7.mp4", audio=None, start=0.0, end=2.0)
    _, reason, kind, _, _ = runner._work((clip, str(tmp_path), "0of1-0"))
    assert reason == "/raw/RD_Radio7.mp4: not a readable video (moov atom not found)"
    assert kind == "not a readable video"
