"""pyproject.toml and environment.yml list the same dependencies; torch is never pulled unpinned by setup."""
from __future__ import annotations

import re
import tomllib

import yaml

from geom import paths


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    pp = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in pp["dependencies"]}
    for extra in pp["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_name(r) for r in pip if not r.startswith("-e")}
    assert wanted == listed, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_torch_is_pinned_in_setup_and_never_torchvision():
    setup = (paths.ROOT / "scripts" / "setup.sh").read_text()
    assert 'torch==${GEOM_TORCH_VERSION:-2.13.0}' in setup
    assert setup.index("torch==") < setup.index('-e ".[notebooks,test]"'), "torch must be installed first"
    text = (paths.ROOT / "pyproject.toml").read_text() + (paths.ROOT / "environment.yml").read_text()
    code = "\n".join(ln.split("#")[0] for ln in text.splitlines())  # comments may say why it is avoided
    assert "torchvision" not in code


def test_gan_face_generate_installed_without_dependencies():
    """dcgan-faces' package declares torchvision and wandb: setup installs it with --no-deps, at the version
    whose weights checksum geom.models.dcgan pins, after torch; no dependency list names it (pip and conda
    would then pull torchvision)."""
    from geom.models import dcgan

    setup = (paths.ROOT / "scripts" / "setup.sh").read_text()
    line = next((ln for ln in setup.splitlines() if "gan-face-generate" in ln and "pip install" in ln), None)
    assert line is not None, "scripts/setup.sh must install gan-face-generate"
    assert "--no-deps" in line and dcgan.DISTRIBUTION in line, line
    assert setup.index("torch==") < setup.index(line)
    assert f"pip install --no-deps {dcgan.DISTRIBUTION}" in (paths.ROOT / "environment.yml").read_text()
    pp = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(pp["dependencies"]) + [r for extra in pp["optional-dependencies"].values() for r in extra]
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    reqs += next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert not any(_name(r) == "gan-face-generate" for r in reqs), "it must be installed with --no-deps only"
