#!/usr/bin/env bash
# Snakemake runs this once, after it has created the environment of unet.yaml, with that
# environment activated and in the run's working directory (from a copy of this file, so it
# cannot find the checkout from its own path). It installs the unet package, without
# dependencies (unet.yaml has them), from UNET_EM_SOURCE:
#   - a unet-em checkout (workflow/rules/common.smk sets it to the one whose workflow runs):
#     installed editable, so the package stays in step with that checkout's rules and scripts;
#   - or a built wheel (`python -m pip wheel --no-deps . -w dist`), for sites that deploy one:
#     `UNET_EM_SOURCE=/path/unet_em-0.1.0-py3-none-any.whl snakemake --sdm conda ...`.
set -euo pipefail

src="${UNET_EM_SOURCE:-}"
python="${CONDA_PREFIX:+$CONDA_PREFIX/bin/}python"

if [[ "$src" == *.whl && -f "$src" ]]; then
    "$python" -m pip install --no-deps --no-build-isolation "$src"
elif [[ -n "$src" && -f "$src/pyproject.toml" ]]; then
    "$python" -m pip install --no-deps --no-build-isolation --editable "$src"
else
    echo "unet.post-deploy.sh: UNET_EM_SOURCE='$src' is neither a unet-em checkout (a folder" \
        "with pyproject.toml) nor a .whl file; set it to one and run again" >&2
    exit 1
fi
"$python" -c "import unet; print('unet', unet.__version__, 'from', unet.__file__)"
