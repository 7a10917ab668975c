"""Imports run one way: every module's imports (also those inside functions) point to its own
layer or a lower one; model modules import neither Hydra, OmegaConf nor the training engine, and
do no file I/O or downloads.

The layers (docs/architecture.md; a lower layer never imports a higher one):

  0 base        stylization (the package), stylization.errors, .constants, .numerics, .allocator
  1 data        stylization.data.*, stylization.text.*
  2 metrics     stylization.metrics.*
  3 models      every module of a model package (style_e, style_a, syncnet, and later styletalk,
                saas, style_reference) that is not a stage module
  4 engine      stylization.engine.*, stylization.loading, stylization.preprocess.*, stylization.bench.*
  5 stages      stage modules (``stage.py`` / ``*_stage.py`` in a model package), stylization.runs
  6 top         stylization.pipeline, .reference_pipeline, .cli, .app; scripts/, train.py, infer.py

The checker reads sources with :mod:`ast` only (nothing is imported), so it also sees imports
that run only inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

LAYER_NAMES = {0: "base", 1: "data", 2: "metrics", 3: "models", 4: "engine", 5: "stages", 6: "top"}
BASE = {"stylization", "stylization.errors", "stylization.constants", "stylization.numerics", "stylization.allocator"}
MODEL_PACKAGES = ("style_e", "style_a", "styletalk", "saas", "style_reference", "syncnet")
TOP = {"stylization.pipeline", "stylization.reference_pipeline", "stylization.cli", "stylization.app"}
# What a model module (layer 3) must not import: it stays a pure nn.Module, built from arguments.
FORBIDDEN_IN_MODELS = ("hydra", "omegaconf", "stylization.engine", "urllib", "requests", "huggingface_hub")
# ... nor call: reading or writing files and downloading belong to stylization.loading and above.
FILE_IO_CALLS = {"open", "torch.load", "torch.save", "np.load", "np.save", "numpy.load", "numpy.save",
                 "cv2.imread", "cv2.imwrite", "torch.hub.load_state_dict_from_url", "torch.hub.download_url_to_file",
                 "load_state_dict_from_url", "download_url_to_file"}


def is_stage_module(module: str) -> bool:
    """``stylization.<model package>.stage`` or ``..._stage``."""
    parts = module.split(".")
    return (len(parts) == 3 and parts[1] in MODEL_PACKAGES
            and (parts[2] == "stage" or parts[2].endswith("_stage")))


def layer_of(module: str) -> int | None:
    """The layer of a first-party module (``stylization.*``, ``scripts.*``, ``train``, ``infer``);
    None for a module of ours that the map does not place (the test then asks for a place)."""
    parts = module.split(".")
    if parts[0] in ("scripts", "train", "infer") or module in TOP:
        return 6
    if parts[0] != "stylization":
        return None
    if module in BASE:
        return 0
    sub = parts[1]
    if sub in ("data", "text"):
        return 1
    if sub == "metrics":
        return 2
    if sub in MODEL_PACKAGES:
        return 5 if is_stage_module(module) else 3
    if sub in ("engine", "preprocess", "bench") or module == "stylization.loading":
        return 4
    if module == "stylization.runs":
        return 5
    return None


def is_first_party(module: str) -> bool:
    return module.split(".")[0] in ("stylization", "scripts") or module in ("train", "infer")


def imported_modules(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every import in ``source`` (the text of ``module``), relative ones
    resolved; ``from a.b import c`` names ``a.b.c`` when that is a known module, else ``a.b``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.append((node.lineno, full if full in known else target))
    return found


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name / Attribute chain, else ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def file_io_calls(source: str) -> list[tuple[int, str]]:
    """(line, callee) for every call of :data:`FILE_IO_CALLS` in ``source``."""
    return [(node.lineno, dotted(node.func)) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and dotted(node.func) in FILE_IO_CALLS]


def violations(module: str, source: str, is_package: bool = False, known: set[str] = frozenset(),
               path: str = "") -> list[str]:
    """One line per import of ``module`` that points upward, or that a model module may not make."""
    own = layer_of(module)
    where = path or module
    if own is None:
        return [f"{where}: {module} has no layer; place it in tests/test_layering.py's map "
                f"(and docs/architecture.md)"]
    out = []
    if own == 3:
        out += [f"{where}:{line}: {module} calls {call} (a model module does no file I/O or downloads; "
                f"stylization.loading does)" for line, call in file_io_calls(source)]
    for line, target in imported_modules(source, module, is_package, known):
        if own == 3 and any(target == f or target.startswith(f + ".") for f in FORBIDDEN_IN_MODELS):
            out.append(f"{where}:{line}: {module} imports {target} (a model module imports neither Hydra, "
                       f"OmegaConf nor the engine)")
            continue
        if not is_first_party(target):
            continue
        theirs = layer_of(target)
        if theirs is None:
            out.append(f"{where}:{line}: {module} imports {target}, which has no layer")
        elif theirs > own:
            out.append(f"{where}:{line}: {module} imports {target} (layer {theirs} {LAYER_NAMES[theirs]} "
                       f"above {own} {LAYER_NAMES[own]})")
    return out


def project_modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package __init__) for stylization/, scripts/, train.py, infer.py."""
    files = sorted((REPO / "stylization").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
    files += [REPO / "train.py", REPO / "infer.py"]
    modules = {}
    for path in files:
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def test_imports_run_one_way():
    modules = project_modules()
    known = set(modules)
    found = []
    for module, (path, is_package) in modules.items():
        found += violations(module, path.read_text(encoding="utf-8"), is_package, known,
                            str(path.relative_to(REPO)))
    assert not found, f"{len(found)} import(s) against the layering:\n" + "\n".join(found)


def test_the_map_places_each_kind_of_module():
    assert layer_of("stylization.errors") == 0 and layer_of("stylization.numerics") == 0
    assert layer_of("stylization.data.synthetic.build") == 1 and layer_of("stylization.text.emotion_text") == 1
    assert layer_of("stylization.metrics.landmarks") == 2
    assert layer_of("stylization.style_a.renderer") == 3 and layer_of("stylization.style_e.generate") == 3
    assert layer_of("stylization.loading") == 4 and layer_of("stylization.preprocess.faces") == 4
    assert layer_of("stylization.style_e.stage") == 5 and layer_of("stylization.style_e.audio2exp_stage") == 5
    assert layer_of("stylization.runs") == 5
    assert layer_of("stylization.pipeline") == 6 and layer_of("scripts.demo") == 6 and layer_of("infer") == 6
    assert layer_of("stylization.somewhere_new") is None


@pytest.mark.parametrize("module, source, expected", [
    # a back-edge inside a function: data -> loading (the one the preprocess package removed)
    ("stylization.data.fake", "import os\n\ndef f():\n    from stylization.loading import load_official\n",
     ["stylization.data.fake imports stylization.loading (layer 4 engine above 1 data)"]),
    # relative imports are resolved: a model module reaching the engine
    ("stylization.style_a.fake", "from ..engine import checkpoint\n",
     ["stylization.style_a.fake imports stylization.engine.checkpoint (a model module imports neither"]),
    ("stylization.style_e.fake", "import omegaconf\nfrom hydra.utils import instantiate\n",
     ["imports omegaconf (a model module", "imports hydra.utils (a model module"]),
    # a model module importing a stage module (same package, higher layer)
    ("stylization.style_e.fake", "from stylization.style_e.stage import StyleEStage\n",
     ["imports stylization.style_e.stage (layer 5 stages above 3 models)"]),
    ("stylization.engine.fake", "import stylization.pipeline as p\n",
     ["imports stylization.pipeline (layer 6 top above 4 engine)"]),
    ("stylization.mystery", "import os\n", ["stylization.mystery has no layer"]),
    # a model module reading a file or downloading weights
    ("stylization.style_a.fake", "import torch\n\ndef build():\n    return torch.load('w.pt')\n",
     ["stylization.style_a.fake calls torch.load (a model module does no file I/O"]),
    ("stylization.style_a.fake", "import urllib.request\nf = open('x')\n",
     ["calls open (a model module", "imports urllib.request (a model module"]),
    # allowed: downward and sideways, stages may use hydra
    ("stylization.style_e.stage", "from omegaconf import OmegaConf\nfrom stylization.engine.stage import Stage\n"
                                  "from stylization.style_e.denoiser import Denoiser\n", []),
    ("stylization.pipeline", "from stylization.runs import load_run\nfrom stylization.preprocess import pose\n", []),
    ("stylization.preprocess.fake", "from stylization.loading import load_official\nimport torch\n"
                                    "x = torch.load('a.pt')\n", []),
])
def test_the_checker_finds_planted_back_edges(module, source, expected):
    known = {"stylization.engine.checkpoint", "stylization.preprocess.pose"}
    found = violations(module, source, known=known)
    assert len(found) == len(expected), found
    for line, part in zip(found, expected):
        assert part in line, (part, line)
