#!/usr/bin/env bash
# Make .venv (Python 3.11+) and install taskbench into it with every extra.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "taskbench needs Python 3.11 or newer ($PYTHON is older)" >&2; exit 1; }
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.taskbench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[postgres,redis,mysql,etcd,notebooks,dev]'
  touch "$stamp"
fi
