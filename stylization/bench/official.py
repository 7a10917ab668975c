"""The official implementations, imported from the user's clones with the pure-PyTorch ops they ship.

Nothing is fetched: ``official_src`` is a folder holding clones of

* ``VToonify/`` (https://github.com/williamyang1991/VToonify): rosinality's StyleGAN2
  (``model/stylegan/model.py``), DualStyleGAN (``model/dualstylegan.py``) and VToonify
  (``model/vtoonify.py``); their custom ops live in ``model/stylegan/op`` (CUDA, compiled on
  import) and ``model/stylegan/op_cpu`` (plain PyTorch). VToonify's README tells CPU users to
  change the import to ``op_cpu``; :func:`vtoonify_modules` does that change in ``sys.modules``
  (the clone is not edited);
* ``PIRender/`` (https://github.com/RenYurui/PIRender): ``generators/face_model.py`` and its
  ``config/face.yaml``.

Both repositories use top-level package names (``model``, ``util``, ``generators``) that clash
with each other, so a process imports each under its own ``sys.path`` entry, VToonify first.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from stylization.errors import ConfigError

REPOS = {
    "VToonify": "https://github.com/williamyang1991/VToonify",
    "PIRender": "https://github.com/RenYurui/PIRender",
}
# What each repository must hold for the benchmark (checked before importing, for a clear message).
NEEDED = {
    "VToonify": ("model/stylegan/model.py", "model/stylegan/op_cpu/__init__.py", "model/dualstylegan.py",
                 "model/vtoonify.py"),
    "PIRender": ("generators/face_model.py", "util/flow_util.py", "config/face.yaml"),
}


def repo_root(official_src: str, repo: str) -> str:
    """``official_src/<repo>``, checked to hold the files the benchmark imports."""
    root = os.path.join(os.fspath(official_src), repo)
    missing = [f for f in NEEDED[repo] if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise ConfigError(f"official_src={official_src}: {repo}/ lacks {', '.join(missing)}; "
                          f"clone it there: git clone {REPOS[repo]} {root}")
    return root


def _import_from(root: str, names: list[str], aliases: dict[str, str] | None = None) -> list[ModuleType]:
    """Import ``names`` with ``root`` first on ``sys.path`` (removed afterwards); ``aliases`` maps a
    module name to the module that stands in for it (installed before the imports)."""
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    try:
        for name, target in (aliases or {}).items():
            parent = name.rsplit(".", 1)[0]
            importlib.import_module(parent)
            sys.modules[name] = importlib.import_module(target)
        return [importlib.import_module(n) for n in names]
    finally:
        sys.path.remove(root)


def vtoonify_modules(official_src: str) -> dict[str, ModuleType]:
    """{"stylegan": model.stylegan.model, "dualstylegan": model.dualstylegan, "vtoonify": model.vtoonify}
    with ``model.stylegan.op`` replaced by ``model.stylegan.op_cpu``."""
    root = repo_root(official_src, "VToonify")
    stylegan, dualstylegan, vtoonify = _import_from(
        root, ["model.stylegan.model", "model.dualstylegan", "model.vtoonify"],
        {"model.stylegan.op": "model.stylegan.op_cpu"})
    return {"stylegan": stylegan, "dualstylegan": dualstylegan, "vtoonify": vtoonify}


def pirender_modules(official_src: str) -> dict:
    """{"face_model": generators.face_model, "flow_util": util.flow_util, "params": the generator's
    arguments from config/face.yaml (gen.param)}."""
    import yaml

    root = repo_root(official_src, "PIRender")
    face_model, flow_util = _import_from(root, ["generators.face_model", "util.flow_util"])
    with open(os.path.join(root, "config", "face.yaml")) as f:
        params = yaml.safe_load(f)["gen"]["param"]
    return {"face_model": face_model, "flow_util": flow_util, "params": params}
