#!/usr/bin/env bash
# Run a conformance campaign (default: random modules, every transform, CPU plus CUDA when
# present, 60 s, one worker per core) into reports/conform.sqlite and write
# reports/index.html and summary.json. Extra arguments go to `conform run` (see `conform run --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/conform" run --workers auto "$@"
