"""The `drum-compat` console script: `--version` answered before anything heavy is imported (the command line's
module loads pandas and the servers' runtime, seconds on a busy machine), every other command by compat.cli."""
from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        from drum_compat.shared import __version__

        print(f"drum-compat {__version__}")
        return 0
    from drum_compat.compat.cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
