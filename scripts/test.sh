#!/usr/bin/env bash
# Install what the tests need and run the whole test suite in parallel.
# Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
source "$root/scripts/browser.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -n auto "$@"
