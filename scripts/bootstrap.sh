#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned torch/torchvision and fx-conform installed in it.
# Sourced by scripts/campaign.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.fx-conform-installed"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "fx-conform needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

want="$(cat "$root/pyproject.toml" | "$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  return 0 2>/dev/null || exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# torch and torchvision first, pinned: with nothing installed a looser requirement would
# pull a different build.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
echo "$want" > "$stamp"
