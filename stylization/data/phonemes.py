"""Phonemes per video frame, offline: StyleTalk's content input.

Vocabulary: StyleTalk's 41 entries (:data:`PHONEMES`, in the order of the official ``phindex.json``:
the 39 CMU ARPAbet phones, ``NSN`` for noise and ``SIL`` for silence, alphabetical), one index per
video frame.

Two ways from speech to labels, both with pocketsphinx's English models, which ship inside the
``pocketsphinx`` package (no download):

* :meth:`PhonemeRecognizer.recognize` — phone recognition (pocketsphinx's ``allphone`` search
  with its phone language model ``en-us-phone.lm.bin``): no transcript needed;
* :meth:`PhonemeRecognizer.align` — forced alignment of a known transcript: the words' phones
  from the CMU dictionary that comes with the model (``cmudict-en-us.dict``); a word it lacks gets
  its phones from :func:`g2p` (espeak-ng's pronunciation, mapped from IPA to ARPAbet).

pocketsphinx segments at 100 frames per second, four to a 25 fps video frame; a video frame takes
the phone that covers most of its four steps (:func:`frame_labels`), ``SIL`` where none does.

Files: the official StyleTalk phoneme file is a JSON list of indices, one per frame of the 30 fps
video the official inference uses (:func:`read_official_json`, :func:`write_official_json`;
:func:`resample_labels` converts the frame rate).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np

from stylization.errors import DataError

PHONEMES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
            "JH", "K", "L", "M", "N", "NG", "NSN", "OW", "OY", "P", "R", "S", "SH", "SIL", "T", "TH", "UH", "UW", "V",
            "W", "Y", "Z", "ZH")
INDEX = {name: i for i, name in enumerate(PHONEMES)}
SIL, NSN = INDEX["SIL"], INDEX["NSN"]
STEPS_PER_SECOND = 100  # pocketsphinx's frame rate
OFFICIAL_FPS = 30       # the frame rate of the official StyleTalk phoneme files
WINDOW = 11             # StyleTalk's content window: a frame's phoneme and 5 either side

# IPA (espeak-ng, en-us) -> ARPAbet, longest symbols first. Flaps become T and a glottal stop T,
# as the CMU dictionary writes "better" and "button"; an r-coloured vowel before r is one ER
# ("battery"), and "or" is AO R ("storm"), as there.
IPA_TO_ARPABET = {
    "ɚɹ": "ER", "oːɹ": "AO R", "ɔːɹ": "AO R", "oɹ": "AO R", "aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "ɔɪ": "OY", "əʊ": "OW", "ɪə": "IH R", "ɛɹ": "EH R", "ʊɹ": "UH R",
    "tʃ": "CH", "dʒ": "JH", "ɑː": "AA", "ɔː": "AO", "ɜː": "ER", "iː": "IY", "uː": "UW", "oː": "OW", "aː": "AA",
    "ɑ": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɔ": "AO", "ɛ": "EH", "ɚ": "ER", "ɝ": "ER", "ɪ": "IH",
    "ᵻ": "IH", "i": "IY", "ʊ": "UH", "u": "UW", "o": "OW", "e": "EH", "a": "AE", "ɒ": "AA",
    "θ": "TH", "ð": "DH", "ʃ": "SH", "ʒ": "ZH", "ŋ": "NG", "ɹ": "R", "r": "R", "ɾ": "T", "ʔ": "T", "j": "Y",
    "w": "W", "h": "HH", "x": "HH", "b": "B", "d": "D", "f": "F", "g": "G", "ɡ": "G", "k": "K", "l": "L",
    "ɫ": "L", "m": "M", "n": "N", "p": "P", "s": "S", "t": "T", "v": "V", "z": "Z",
}
_IGNORED_IPA = set("ˈˌ.ː‿͡- ")


def phone_index(name: str) -> int:
    """A pocketsphinx phone name -> its vocabulary index: ARPAbet as is, ``SIL`` (and ``<sil>``) to
    SIL, fillers (``+NSN+``, ``+SPN+``, ``+BREATH+`` ...) to NSN."""
    name = name.upper().strip()
    if name in INDEX:
        return INDEX[name]
    if name in ("<SIL>", "<S>", "</S>"):
        return SIL
    if name.startswith("+") or name.startswith("["):
        return NSN
    raise ValueError(f"unknown phone {name!r}")


def frame_labels(segments, n_frames: int, steps_per_frame: int = STEPS_PER_SECOND // 25) -> np.ndarray:
    """Segments [(phone name or index, first step, last step inclusive)] at 100 steps per second ->
    int64 [n_frames]: each video frame the phone covering most of its ``steps_per_frame`` steps (on a
    tie, the one first in :data:`PHONEMES`), SIL where no segment covers it."""
    votes = np.zeros((n_frames, len(PHONEMES)), np.int64)
    for name, first, last in segments:
        index = name if isinstance(name, (int, np.integer)) else phone_index(name)
        for step in range(max(int(first), 0), min(int(last) + 1, n_frames * steps_per_frame)):
            votes[step // steps_per_frame, index] += 1
    labels = np.full(n_frames, SIL, np.int64)
    covered = votes.sum(1) > 0
    labels[covered] = votes[covered].argmax(1)
    return labels


def resample_labels(labels: np.ndarray, src_fps: float, dst_fps: float, n_frames: int | None = None) -> np.ndarray:
    """Per-frame labels at ``src_fps`` -> at ``dst_fps``: each output frame takes the input frame on
    screen at its time, as videos are resampled (:func:`stylization.data.video.resample_indices`);
    ``n_frames`` cuts or pads (with the last label) to a length, e.g. the clip's frame count."""
    from stylization.data.video import resample_indices

    labels = np.asarray(labels, np.int64)
    if not len(labels):
        return np.full(int(n_frames or 0), SIL, np.int64)
    out = labels[resample_indices(np.arange(len(labels)) / src_fps, src_fps, dst_fps)]
    if n_frames is not None:
        out = out[:n_frames] if len(out) >= n_frames else np.concatenate([out, np.full(n_frames - len(out), out[-1])])
    return out


def phoneme_windows(labels: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Per-frame phoneme indices [T] -> int64 windows [T, window] centred on each frame, padded with
    SIL past either end (as the official inference pads)."""
    half = window // 2
    padded = np.concatenate([np.full(half, SIL), np.asarray(labels), np.full(half, SIL)]).astype(np.int64)
    return np.lib.stride_tricks.sliding_window_view(padded, window).copy()


def read_official_json(path: str | os.PathLike) -> np.ndarray:
    """An official StyleTalk phoneme file (a JSON list of indices 0..40, 30 fps) -> int64 [T]."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            values = json.load(f)
    except FileNotFoundError:
        raise DataError("phoneme file not found", path) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable JSON phoneme file ({exc})", path) from None
    if not isinstance(values, list) or not all(isinstance(v, int) and 0 <= v < len(PHONEMES) for v in values):
        raise DataError(f"expected a JSON list of phoneme indices 0..{len(PHONEMES) - 1}", path)
    return np.asarray(values, np.int64)


def write_official_json(path: str | os.PathLike, labels: np.ndarray) -> None:
    """int labels [T] (30 fps, the official files' rate) -> the official JSON list, written atomically."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump([int(v) for v in labels], f)
    os.replace(tmp, path)


def ipa_to_arpabet(ipa: str) -> list[str]:
    """espeak-ng's IPA for one word -> ARPAbet phones (longest match; stress and length marks dropped)."""
    phones, i = [], 0
    keys = sorted(IPA_TO_ARPABET, key=len, reverse=True)
    while i < len(ipa):
        if ipa[i] in _IGNORED_IPA:
            i += 1
            continue
        for key in keys:
            if ipa.startswith(key, i):
                phones.extend(IPA_TO_ARPABET[key].split())
                i += len(key)
                break
        else:
            i += 1  # a symbol outside the table (rare diacritics): skipped
    return phones


def g2p(word: str, voice: str = "en-us") -> list[str]:
    """ARPAbet phones of ``word`` from espeak-ng's pronunciation (for words the CMU dictionary lacks)."""
    from stylization.data.synthetic.speech import espeak_path

    done = subprocess.run([espeak_path(), "-q", "--ipa", "-v", voice, word], capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"espeak-ng could not pronounce {word!r}: {done.stderr.strip()}")
    return ipa_to_arpabet(done.stdout.strip())


def words_of(text: str) -> list[str]:
    """A transcript -> lower-case words as the dictionary spells them (letters and apostrophes)."""
    return re.findall(r"[a-z']+", text.lower().replace("’", "'"))


class PhonemeRecognizer:
    """pocketsphinx with the English models inside the package; decoders are built on first use."""

    def __init__(self):
        self._phone_decoder = None
        self.added_words: dict[tuple[str, str], list[str]] = {}  # (voice, word) -> espeak-ng's phones (g2p)

    @staticmethod
    def _model(*parts: str) -> str:
        import pocketsphinx

        return os.path.join(pocketsphinx.get_model_path(), *parts)

    @staticmethod
    def _pcm(wav: np.ndarray, dither: float = 2.0, seed: int = 0) -> bytes:
        """16-bit samples with a fixed Gaussian dither (``dither`` LSB): runs of exact digital zeros
        (synthetic speech has them between words) make pocketsphinx's word-level alignment fail on
        most synthetic clips (14 of 24 without dither, 1 with 2 LSB); a recording's own noise never
        has them."""
        wav = np.asarray(wav)
        scaled = wav.astype(np.float64) if np.issubdtype(wav.dtype, np.integer) else np.clip(wav, -1.0, 1.0) * 32767.0
        if dither:
            scaled = scaled + np.random.default_rng(seed).normal(0.0, dither, scaled.shape)
        return np.clip(np.round(scaled), -32768, 32767).astype(np.int16).tobytes()

    def recognize(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        """16 kHz mono speech -> int64 [n_frames] phone labels at 25 fps (no transcript).

        One decoder serves every clip (building one costs 0.16 s); its cepstral mean is computed per
        clip (``cmn="batch"``, the whole utterance is given at once), so a clip's labels do not
        depend on the clips decoded before it (pocketsphinx's default, a running mean, carries over)."""
        from pocketsphinx import Decoder

        if self._phone_decoder is None:
            self._phone_decoder = Decoder(allphone=self._model("en-us", "en-us-phone.lm.bin"), lm=None,
                                          samprate=16000, beam=1e-20, pbeam=1e-20, lw=2.0, cmn="batch",
                                          loglevel="FATAL")
        d = self._phone_decoder
        d.start_utt()
        d.process_raw(self._pcm(wav), full_utt=True)
        d.end_utt()
        return frame_labels([(s.word, s.start_frame, s.end_frame) for s in d.seg()], n_frames)

    # (dither LSB, its seed, beam widths): tried in turn until one aligns; each fails on other clips
    ALIGN_ATTEMPTS = ((2.0, 0, {}), (2.0, 1, {}), (8.0, 0, {}), (0.0, 0, {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}),
                      (4.0, 0, {}), (2.0, 2, {}), (1.0, 0, {}), (16.0, 0, {}))

    def align(self, wav: np.ndarray, text: str, n_frames: int, voice: str = "en-us") -> np.ndarray:
        """16 kHz mono speech and its transcript -> int64 [n_frames] phone labels at 25 fps (forced
        alignment; the CMU dictionary's first pronunciation, :func:`g2p` for words it lacks).

        A fresh decoder aligns each clip (0.12 s to build): one reused across clips carries its
        state over and failed on a third of a corpus's clips. pocketsphinx's search sometimes finds
        no path; the settings of :data:`ALIGN_ATTEMPTS` are tried in turn, with the CMU dictionary's
        pronunciations, then with espeak-ng's for every word (the synthetic corpus's speech is
        espeak-ng's, so its own pronunciations fit it: ``voice`` is its espeak-ng voice, e.g.
        ``en-gb+m3``); a clip none aligns raises :class:`DataError`."""
        from pocketsphinx import Decoder

        words = words_of(text)
        if not words:
            return np.full(n_frames, SIL, np.int64)
        attempts = [(lexicon, *attempt) for lexicon in ("cmudict", "espeak") for attempt in self.ALIGN_ATTEMPTS]
        for lexicon, dither, seed, beams in attempts:
            d = Decoder(lm=None, samprate=16000, loglevel="FATAL", **beams)
            tokens = []
            for word in words:
                if lexicon == "espeak" or d.lookup_word(word) is None:
                    key = (voice.split("+")[0], word)  # the variant (+m3) does not change pronunciation
                    if key not in self.added_words:
                        phones = g2p(word, key[0])
                        if not phones:
                            raise DataError(f"no pronunciation for {word!r} (not in the CMU dictionary; espeak-ng gave none)")
                        self.added_words[key] = phones
                    token = f"{word}_espeak"  # a new entry: the dictionary's own cannot be replaced
                    if d.lookup_word(token) is None:
                        d.add_word(token, " ".join(self.added_words[key]), True)
                    tokens.append(token)
                else:
                    tokens.append(word)
            pcm = self._pcm(wav, dither, seed)
            d.set_align_text(" ".join(tokens))
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            if d.hyp() is None:
                continue
            try:
                d.set_alignment()
                d.start_utt()
                d.process_raw(pcm, full_utt=True)
                d.end_utt()
                alignment = d.get_alignment()
            except RuntimeError:
                continue
            if alignment is None:
                continue
            segments = [(phone.name, phone.start, phone.start + phone.duration - 1)
                        for word in alignment for phone in word]
            return frame_labels(segments, n_frames)
        raise DataError(f"pocketsphinx could not align {text!r} to {len(wav) / 16000:.2f} s of speech")
