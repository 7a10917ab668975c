"""The shared facts (stylization.constants) agree with ARCHITECTURE.md and are written only there."""

from __future__ import annotations

import ast

from conftest import REPO

from stylization import constants as c

# Names another module may bind at its top level for a different thing: data/parsing.py's BiSeNet
# class labels NOSE and MOUTH are label numbers, not landmark sets.
OTHER_MEANINGS = {"stylization/data/parsing.py": {"NOSE", "MOUTH"}}


def test_coefficient_layout():
    widths = {k: s.stop - s.start for k, s in c.COEFF_SLICES.items()}
    assert widths == {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3, "crop": 3}
    spans = sorted((s.start, s.stop) for s in c.COEFF_SLICES.values())
    assert spans[0][0] == 0 and spans[-1][1] == c.COEFF_DIM == 260
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no gaps
    assert c.COEFF_SLICES["crop"].start == c.RECON_DIM == 257
    assert (c.ID_DIM, c.EXP_DIM) == (widths["id"], widths["exp"])
    assert c.SEMANTIC_DIM == sum(widths[k] for k in c.SEMANTIC_PARTS) == 73
    assert c.WINDOW_FRAMES == 27


def test_time_and_crops():
    assert (c.SAMPLE_RATE, c.FPS, c.SAMPLES_PER_FRAME) == (16000, 25, 640)
    assert (c.FACE_CROP_SIZE, c.RECON_CROP_SIZE) == (256, 224)


def test_landmark_sets_partition_the_68_points():
    assert c.JAW + c.BROWS + c.NOSE + c.EYES + c.MOUTH == tuple(range(c.N_LANDMARKS))
    assert c.MOUTH == tuple(range(48, 68)) and c.INNER_LIPS == tuple(range(60, 68))
    pairs = c.LIP_OPENING_PAIRS + c.INNER_LIP_PAIRS
    assert all(a in c.MOUTH and b in c.MOUTH for a, b in pairs)
    assert all(a in c.INNER_LIPS and b in c.INNER_LIPS for a, b in c.INNER_LIP_PAIRS)


def test_the_old_names_are_the_same_objects():
    from stylization.data import audio, coeffs, parsing

    assert coeffs.COEFF_SLICES is c.COEFF_SLICES and coeffs.SEMANTIC_DIM == c.SEMANTIC_DIM
    assert audio.SAMPLE_RATE == c.SAMPLE_RATE and audio.SAMPLES_PER_FRAME == c.SAMPLES_PER_FRAME
    assert parsing.N_CLASSES == c.PARSING_CLASSES


def test_no_module_redefines_a_constant():
    names = {n for n in vars(c) if n.isupper()}
    found = []
    for path in sorted((REPO / "stylization").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel == "stylization/constants.py":
            continue
        allowed = OTHER_MEANINGS.get(rel, set())
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            bound = {n.id for t in targets for n in ast.walk(t)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            found += [f"{rel}:{node.lineno}: {n}" for n in sorted(bound & names - allowed)]
    assert not found, "constants redefined outside stylization/constants.py (import them):\n" + "\n".join(found)
