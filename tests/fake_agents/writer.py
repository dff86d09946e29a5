"""A fake agent that writes files, in step with other agents through marker files.

    python writer.py "[--mark FILE] [--wait FILE] [--write PATH]..."

Its one argument is its task's description (``{description}``), read as a command line: it
makes ``--mark`` (an empty file), waits for ``--wait`` to exist (at most 10 s, the tests' WAIT;
exit 1 past it), then writes each ``--write`` path (relative to the repository, its working
directory; parents made), in order.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

WAIT = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(prog="writer")
    parser.add_argument("--mark", type=Path)
    parser.add_argument("--wait", type=Path)
    parser.add_argument("--write", action="append", default=[])
    args = parser.parse_args(shlex.split(sys.argv[1]))
    if args.mark is not None:
        args.mark.touch()
    deadline = time.monotonic() + WAIT
    while args.wait is not None and not args.wait.exists():
        if time.monotonic() > deadline:
            sys.exit(f"writer: {args.wait} never came")
        time.sleep(0.01)  # another process's file: nothing to wait on but its existence
    for path in map(Path, args.write):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"written by {sys.argv[1]!r}\n")


if __name__ == "__main__":
    main()
