#!/usr/bin/env python3
"""Prunes a shared cargo target dir that CI reuses between runs: every build of a changed test or
binary leaves a new `<name>-<hash>` executable (hundreds of MB with debug info) in
`<target>/<profile>/deps`, and the old ones are never removed, so the disk fills up over a day of
runs. Keeps the newest KEEP files of each name and deletes older ones over MIN_MB.

Usage: prune_target.py TARGET_DIR [--keep 2] [--min-mb 50]
"""

import argparse
import collections
import re
import sys
from pathlib import Path

HASHED = re.compile(r"^(?P<name>.+)-[0-9a-f]{16}(?P<ext>\..*)?$")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--keep", type=int, default=2)
    ap.add_argument("--min-mb", type=float, default=50)
    args = ap.parse_args()
    freed, removed = 0, 0
    for deps in Path(args.target).glob("*/deps"):
        groups = collections.defaultdict(list)
        for f in deps.iterdir():
            m = HASHED.match(f.name)
            if m and f.is_file():
                groups[(m["name"], m["ext"] or "")].append(f)
        for files in groups.values():
            files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
            for old in files[args.keep:]:
                size = old.stat().st_size
                if size >= args.min_mb * 1024 * 1024:
                    old.unlink()
                    freed += size
                    removed += 1
    print(f"prune: removed {removed} stale build outputs, {freed / 1e9:.1f} GB, from {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
