"""Train preset dictionaries for the record store's packed specs and outcome details.

    pip install zstandard
    python scripts/store_dictionaries.py REPORT_DIR... --spec spec-3.bin --detail detail-2.bin

Reads the cases and outcomes of the stores in the given report directories (default
campaigns of a few seeds make a good sample), trains a dictionary for each with zstd's
trainer, and writes the last 32 KB of each (deflate's window: the part zlib can use) into
``conform/dictionaries``. The store deflates with zlib; zstd is needed only here.

A dictionary is part of the stored format: never overwrite a shipped file. A new one gets a
new name and a new marker byte in :mod:`conform.store_format`, and the old ones stay so that
every store ever written can still be read. ``spec-2.bin`` and ``detail-1.bin`` were
trained on default campaigns of seeds 0 to 3 (60 s each, one and two workers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 32 * 1024


def _samples(report_dirs: list[Path]) -> tuple[list[bytes], list[bytes]]:
    sys.path.insert(0, str(ROOT))
    from conform.store import Store
    from conform.store_format import detail_of, dumps

    specs: dict[str, bytes] = {}
    details: list[bytes] = []
    for report_dir in report_dirs:
        with Store.open(report_dir, create=False) as store:
            for outcome in store.outcomes():
                specs.setdefault(f"{outcome.source}:{dumps(outcome.spec)}:{outcome.seed}", dumps(outcome.spec).encode())
                detail = detail_of(outcome)
                if detail:
                    details.append(dumps(detail).encode())
    return list(specs.values()), details


def _train(samples: list[bytes]) -> bytes:
    import zstandard

    trained = zstandard.train_dictionary(WINDOW + 4096, samples)
    return trained.as_bytes()[-WINDOW:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dirs", nargs="+", type=Path)
    parser.add_argument("--spec", required=True, help="file name of the new spec dictionary")
    parser.add_argument("--detail", required=True, help="file name of the new detail dictionary")
    parser.add_argument("--into", type=Path, default=ROOT / "conform" / "dictionaries")
    args = parser.parse_args(argv)
    specs, details = _samples(args.report_dirs)
    for name, samples in ((args.spec, specs), (args.detail, details)):
        target = args.into / name
        if target.exists():
            print(f"{target} exists; a shipped dictionary is never replaced (pick a new name)", file=sys.stderr)
            return 2
        target.write_bytes(_train(samples))
        print(f"{target}: trained on {len(samples)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
