"""hpgate, installed from a wheel: the gateway is the `hpgate` binary in the
environment's scripts folder; `python -m hpgate ARGS` runs it."""

import os
import sysconfig

__all__ = ["find_binary"]


def _candidate_dirs():
    """Scripts folders the installer may have put the binary in: this
    environment's, then the user scheme's (`pip install --user`)."""
    yield sysconfig.get_path("scripts")
    user_scheme = {"nt": "nt_user", "posix": "posix_user"}.get(os.name)
    if user_scheme and user_scheme in sysconfig.get_scheme_names():
        yield sysconfig.get_path("scripts", user_scheme)


def find_binary():
    """The installed hpgate executable's path; FileNotFoundError naming the
    folders searched when it is not there."""
    name = "hpgate.exe" if os.name == "nt" else "hpgate"
    searched = []
    for folder in _candidate_dirs():
        if not folder or folder in searched:
            continue
        searched.append(folder)
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "the hpgate binary is not installed next to this Python "
        "(looked for {} in {})".format(name, ", ".join(searched))
    )
