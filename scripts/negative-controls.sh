#!/usr/bin/env bash
# Shows that the end-to-end test fails for three deliberate defects (issue 3's negative controls):
#   service-name   the driver advertises v1.DRAPlugn     -> the kubelet code rejects registration
#   invalid-slice  a device attribute "bad attribute!"   -> the apiserver rejects the slice
#   cdi-id         prepare returns an unknown CDI ID     -> the reference CDI library cannot resolve it
# Each run must FAIL; the script exits non-zero if any of them passes.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for m in service-name invalid-slice cdi-id; do
  echo "=== defect: $m"
  if DRA_MUTATION=$m PYTHONPATH=tests/e2e/mutations .venv/bin/python -m pytest -q -p no:cacheprovider \
      tests/e2e/test_e2e_example.py -k end_to_end 2>&1 | grep -E "^E  |passed|failed" | head -4 | tee /dev/stderr | grep -q " passed"; then
    echo "!!! the end-to-end test did not catch defect $m"; status=1
  fi
done
exit $status
