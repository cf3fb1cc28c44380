"""`python -m hpgate ARGS`: runs the installed hpgate binary with ARGS."""

import os
import subprocess
import sys

from hpgate import find_binary


def main():
    try:
        binary = find_binary()
    except FileNotFoundError as err:
        print("hpgate: {}".format(err), file=sys.stderr)
        return 127
    argv = [binary] + sys.argv[1:]
    if os.name == "nt":
        # Windows has no exec that keeps the process: run it and pass the
        # exit code on (Ctrl+C reaches both, hpgate handles it).
        try:
            return subprocess.call(argv)
        except KeyboardInterrupt:
            return 130
    # Unix: become hpgate, so signals and the exit code are its own.
    os.execv(binary, argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
