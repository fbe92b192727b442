#!/usr/bin/env bash
# Static checks (run by scripts/test.sh; configuration and the chosen rule sets in pyproject.toml):
#   ruff check     the whole repository (rules: [tool.ruff.lint])
#   mypy           dra_framework and backends ([tool.mypy]; strict on the public backend API)
# Arguments are passed to ruff (e.g. `scripts/lint.sh --fix`, or paths to check only those).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> ruff check"
.venv/bin/ruff check "${@:-.}"
echo "==> mypy (dra_framework, backends)"
.venv/bin/mypy
