#!/usr/bin/env bash
# Creates .venv and installs the framework, its test tools and the example third-party backend.
# Idempotent: a second run only re-checks the install.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml setup.py examples/*/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "==> installing dra-framework and test dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  for pkg in examples/*/pyproject.toml; do
    .venv/bin/python -m pip install -q -e "$(dirname "$pkg")"
  done
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "==> .venv ready"
