#!/usr/bin/env bash
# Install bdl_mm and its pinned OpenMMLab stack into a virtual environment (default: ./.venv).
#
# Usage: bash tools/install.sh [VENV_DIR]
#
# docs/get_started.md explains each pin. The order matters:
#   torch first (it pulls setuptools>=77), then setuptools<70 for the mmcv build (its setup.py imports
#   pkg_resources), mmcv 2.1.0 built from source with its C++ ops (MMSeg 1.2.2 imports mmcv.ops), then
#   setuptools>=77 back, then MMSeg and MMagic (MMagic without its heavy unused extras).
# The built mmcv wheel is cached per torch version under $BDL_MM_CACHE (default ~/.cache/bdl_mm), because
# pip's own wheel cache keys it by the sdist only and a wheel built against another torch crashes with
# undefined symbols. Re-running the script is cheap: every step is skipped when already satisfied.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
CACHE=${BDL_MM_CACHE:-$HOME/.cache/bdl_mm}

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Fingerprint of everything that decides the environment: when it matches the stamp left by the last
# complete run, the environment is already right and nothing needs to run.
STAMP=$VENV/.bdl_mm_install_stamp
FINGERPRINT=$(cat "$ROOT/tools/install.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ] && [ -x "$VENV/bin/python" ]; then
  log "environment $VENV is up to date (delete $STAMP to force a reinstall)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade 'pip==24.3.1'

log "torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" install -q -r "$ROOT/requirements/base.txt"

have_mmcv_ops() {
  "$VENV/bin/python" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" \
    >/dev/null 2>&1
}
if have_mmcv_ops; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  WHEELS=$CACHE/wheels/torch-$TORCH_VERSION
  mkdir -p "$WHEELS"
  "${PIP[@]}" install -q 'setuptools<70' wheel==0.45.1 ninja==1.11.1.3 psutil==6.1.1
  if ! ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl >/dev/null 2>&1; then
    SRC=$(mktemp -d)
    log "building mmcv $MMCV_VERSION with C++ ops from source (about 16 minutes on 2 cores)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$SRC"
    tar xzf "$SRC/mmcv-$MMCV_VERSION.tar.gz" -C "$SRC"
    # torch 2.14's headers need C++20; mmcv 2.1.0 asks for C++17.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$SRC/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" wheel -q --no-cache-dir --no-build-isolation --no-deps \
      "$SRC/mmcv-$MMCV_VERSION" -w "$SRC/out"
    # Move into the cache only once the wheel is complete (a killed build leaves nothing behind).
    mv "$SRC"/out/mmcv-$MMCV_VERSION-*.whl "$WHEELS/"
    rm -rf "$SRC"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEELS"/mmcv-$MMCV_VERSION-*.whl
  "${PIP[@]}" install -q -r "$ROOT/requirements/mmcv_runtime.txt"
  have_mmcv_ops || { echo "mmcv.ops does not import after install" >&2; exit 1; }
fi
"${PIP[@]}" install -q 'setuptools==80.9.0'

log "MMSegmentation, MMagic (without heavy extras), cityscapesscripts, test tools"
"${PIP[@]}" install -q -r "$ROOT/requirements/openmmlab.txt"
# MMagic and cityscapesscripts declare dependencies we do not want (MMagic: heavy optional extras;
# cityscapesscripts: the obsolete `typing` backport). Their real needs are pinned in the files below.
"${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/nodeps.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/mmagic_runtime.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install -q --no-deps -e "$ROOT"

log "checking imports"
"$VENV/bin/python" -W ignore::FutureWarning - <<'PY'  # diffusers (via MMagic) warns on import: not ours to fix
import torch, mmcv, mmengine, mmseg, mmagic
from mmcv.ops import nms  # noqa: F401
from mmagic.models.editors.cyclegan import CycleGAN  # noqa: F401
import mmagic.datasets.transforms  # noqa: F401  (needs albumentations)
import cityscapesscripts.helpers.labels  # noqa: F401
import bdl_mm  # noqa: F401
print(f'torch {torch.__version__} mmcv {mmcv.__version__} mmengine {mmengine.__version__} '
      f'mmseg {mmseg.__version__} mmagic {mmagic.__version__}')
PY
echo "$FINGERPRINT" > "$STAMP"
log "done: activate with 'source $VENV/bin/activate'"
