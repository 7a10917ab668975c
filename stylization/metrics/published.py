"""The papers' published benchmark tables, as data: the columns in each paper's order (mapped to the
benchmark's metric keys) and every row as printed (../shared/papers/; bold and underline dropped).

``TABLES[paper]`` -> :class:`PaperTable`. ``scripts/benchmark_table.py`` prints our rows in the
same column order beside these. Numbers are the papers' own, computed with code none of them
released, so a row of ours is comparable in definition (docs/benchmark.md), not in implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PaperTable:
    """One paper's comparison table: ``columns`` [(header, metric key)], ``lower_is_better`` keys,
    and ``rows[dataset]`` = [(method, values in column order)]."""

    title: str
    columns: tuple[tuple[str, str], ...]
    rows: dict[str, tuple[tuple[str, tuple[float, ...]], ...]] = field(default_factory=dict)
    lower_is_better: frozenset[str] = frozenset({"fid", "m_lmd", "f_lmd", "lmd", "d_l", "d_v", "d_a"})


STYLE2TALKER = PaperTable(
    title="Style²Talker (AAAI 2024), Table 1",
    columns=(("SSIM", "ssim"), ("FID", "fid"), ("M-LMD", "m_lmd"), ("F-LMD", "f_lmd"), ("Sync_conf", "sync_conf")),
    rows={
        "mead": (
            ("VT+MakeItTalk", (0.692, 82.577, 6.696, 5.948, 0.734)),
            ("VT+Wav2Lip", (0.700, 129.893, 6.153, 5.465, 3.663)),
            ("VT+Audio2Head", (0.660, 75.253, 9.032, 9.856, 1.772)),
            ("VT+PC-AVS", (0.624, 148.015, 14.250, 12.758, 2.664)),
            ("VT+AVCT", (0.632, 63.222, 12.461, 11.355, 2.841)),
            ("VT+EAMM", (0.690, 73.167, 6.541, 6.247, 1.801)),
            ("VT+StyleTalk", (0.726, 91.661, 4.343, 4.696, 1.987)),
            ("Style²Talker", (0.795, 23.207, 3.317, 2.696, 2.847)),
            ("GT+VT", (1.000, 0.000, 0.000, 0.000, 2.985)),
        ),
        "hdtf": (
            ("VT+MakeItTalk", (0.630, 50.009, 6.907, 6.279, 0.857)),
            ("VT+Wav2Lip", (0.656, 48.888, 6.279, 5.662, 2.479)),
            ("VT+Audio2Head", (0.588, 48.91, 7.087, 6.930, 2.559)),
            ("VT+PC-AVS", (0.436, 110.108, 9.678, 13.321, 2.545)),
            ("VT+AVCT", (0.583, 44.616, 12.005, 10.739, 3.515)),
            ("VT+EAMM", (0.555, 65.048, 7.771, 7.872, 2.355)),
            ("VT+StyleTalk", (0.641, 50.974, 6.268, 6.404, 2.461)),
            ("Style²Talker", (0.718, 23.330, 3.046, 2.791, 2.734)),
            ("GT+VT", (1.000, 0.000, 0.000, 0.000, 2.262)),
        ),
    },
)

STYLETALK = PaperTable(
    title="StyleTalk (AAAI 2023), Table 1",
    columns=(("SSIM", "ssim"), ("CPBD", "cpbd"), ("F-LMD", "f_lmd"), ("M-LMD", "m_lmd"), ("Sync_conf", "sync_conf")),
    rows={
        "mead": (
            ("MakeitTalk", (0.725, 0.106, 3.969, 5.324, 2.104)),
            ("Wav2Lip", (0.795, 0.178, 2.718, 4.052, 5.257)),
            ("PC-AVS", (0.504, 0.071, 5.828, 4.970, 2.183)),
            ("AVCT", (0.832, 0.139, 2.923, 5.520, 2.525)),
            ("GC-AVT", (0.340, 0.142, 8.039, 7.103, 2.417)),
            ("EAMM", (0.397, 0.084, 6.698, 6.478, 1.405)),
            ("Ground Truth", (1.0, 0.222, 0.0, 0.0, 4.131)),
            ("StyleTalk", (0.837, 0.164, 2.122, 3.249, 3.474)),
        ),
        "hdtf": (
            ("MakeitTalk", (0.593, 0.248, 5.084, 4.447, 2.563)),
            ("Wav2Lip", (0.618, 0.299, 4.544, 3.630, 3.072)),
            ("PC-AVS", (0.422, 0.132, 10.506, 3.931, 2.701)),
            ("AVCT", (0.755, 0.233, 2.733, 3.610, 3.147)),
            ("GC-AVT", (0.337, 0.296, 10.537, 6.206, 2.772)),
            ("EAMM", (0.387, 0.144, 7.031, 6.857, 1.799)),
            ("Ground Truth", (1.0, 0.307, 0.0, 0.0, 3.961)),
            ("StyleTalk", (0.812, 0.302, 1.941, 2.412, 3.165)),
        ),
    },
)

SAAS = PaperTable(
    title="SAAS (AAAI 2024), Table 1",
    columns=(("SSIM", "ssim"), ("FID", "fid"), ("M-LMD", "m_lmd"), ("F-LMD", "f_lmd"), ("Sync_conf", "sync_conf")),
    rows={
        "mead": (
            ("MakeItTalk", (0.618, 73.064, 4.314, 4.778, 1.719)),
            ("Wav2Lip", (0.635, 86.812, 4.146, 4.271, 3.275)),
            ("Audio2Head", (0.609, 84.315, 5.636, 5.997, 2.796)),
            ("PC-AVS", (0.588, 95.913, 6.592, 6.969, 2.837)),
            ("AVCT", (0.656, 83.574, 4.883, 4.676, 2.946)),
            ("SadTalker", (0.636, 88.750, 3.637, 3.736, 3.135)),
            ("EAMM", (0.624, 83.396, 4.964, 4.458, 2.708)),
            ("StyleTalk", (0.669, 68.399, 3.361, 3.262, 3.288)),
            ("SAAS", (0.683, 59.718, 3.104, 2.914, 3.346)),
            ("SAAS-V", (0.830, 40.862, 1.552, 1.413, 3.490)),
            ("GT", (1.000, 0.000, 0.000, 0.000, 3.590)),
        ),
        "hdtf": (
            ("MakeItTalk", (0.648, 23.124, 5.061, 5.193, 1.888)),
            ("Wav2Lip", (0.729, 19.349, 4.571, 4.667, 5.077)),
            ("Audio2Head", (0.610, 31.503, 6.467, 6.263, 1.930)),
            ("PC-AVS", (0.431, 128.806, 7.827, 7.675, 3.661)),
            ("AVCT", (0.633, 44.636, 5.393, 5.376, 4.231)),
            ("SadTalker", (0.697, 18.317, 3.039, 3.143, 3.157)),
            ("EAMM", (0.630, 57.145, 5.353, 5.946, 1.555)),
            ("StyleTalk", (0.723, 19.327, 2.758, 2.448, 2.445)),
            ("SAAS", (0.732, 18.919, 2.588, 2.185, 2.717)),
            ("SAAS-V", (0.873, 9.057, 1.412, 1.323, 3.645)),
            ("GT", (1.000, 0.000, 0.000, 0.000, 2.903)),
        ),
    },
)

TABLES = {"style2talker": STYLE2TALKER, "styletalk": STYLETALK, "saas": SAAS}
