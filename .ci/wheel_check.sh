#!/usr/bin/env bash
# mtl_keras as a user installs it: builds the sdist and, from it, the wheel (`python -m build`),
# installs the wheel (not editable, with its dependencies and the plots and tfrs extras) into a
# fresh virtual environment, then from a folder outside the checkout checks it under Keras 3 and
# under tf_keras (tests/packaging/check_installed.py): every module of the source tree is in the
# sdist and the wheel, every module imports, one version number, `mtl-keras demo --quick` exits 0.
# `pip check` must be clean. Dependencies come from pip's cache (filled by `make venv`).
#   .ci/wheel_check.sh            (`make wheel-check`; CI runs it after `make test`)
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
cd "$(dirname "$0")/.."
repo=$(pwd)
python=${PYTHON_BUILD:-$repo/.venv/bin/python}   # has `build` (the test extra)
work=$(mktemp -d "${TMPDIR:-/tmp}/mtl_keras_wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

"$python" -c "import sys; sys.path.insert(0, 'tests/packaging'); import check_installed as c; \
print('\n'.join(sorted(c.source_modules('mtl_keras'))))" >"$work/source_modules.txt"
"$python" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/mtl_keras-*.whl)
sdist=$(ls "$work"/dist/mtl_keras-*.tar.gz)
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-compile "mtl_keras[plots,tfrs] @ file://$wheel"
"$work/venv/bin/python" -m pip check

cd "$work"   # outside the checkout: `import mtl_keras` must find the installed copy
check=("$work/venv/bin/python" "$repo/tests/packaging/check_installed.py" --wheel "$wheel" --sdist "$sdist"
       --source "$repo/mtl_keras" --source-list "$work/source_modules.txt" --demo)
env -u TF_USE_LEGACY_KERAS "${check[@]}" --out "$work/demo_keras3"
TF_USE_LEGACY_KERAS=1 "${check[@]}" --out "$work/demo_tf_keras"
echo "wheel check took $(( $(date +%s) - start )) s"
