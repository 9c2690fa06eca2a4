#!/usr/bin/env bash
# make matrix: run tox over every corner whose interpreter this machine has.
# pyenv's shims only answer for the selected versions, so select every installed 3.10-3.13,
# resolve each to its real executable and hand those to tox; report the missing ones.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v pyenv >/dev/null; then
  versions=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.(10|11|12|13)\.[0-9]+$' | tr '\n' ':')
  export PYENV_VERSION="${versions%:}"
fi
found=()
for minor in 3.10 3.11 3.12 3.13; do
  if exe=$("python$minor" -c 'import sys; print(sys.executable)' 2>/dev/null); then
    echo "matrix: Python $minor at $exe"
    found+=("$exe")
  else
    echo "matrix: Python $minor NOT FOUND - its corner is skipped" >&2
  fi
done
[ ${#found[@]} -gt 0 ] || { echo "matrix: no interpreter found" >&2; exit 1; }
# The corners check compatibility; the slow fault matrices and the packaging build
# (behaviour, not compatibility) run once, in `make test`.  Arguments replace that
# filter: `./scripts/matrix.sh -m ""` runs everything in every corner.
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/tox run-parallel --parallel "${MATRIX_PARALLEL:-1}" --parallel-no-spinner \
  --discover "${found[@]}" -- "$@"
