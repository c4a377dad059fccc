"""The ``colorot`` command's entry point (and ``python -m colorot``'s).

A default ``colorot fit`` fits the target's mixture by EM in a second process
(:mod:`colorot.em_process`), whose scikit-learn import is the longest step before the fit can use
it. So before anything else is imported, a ``fit`` command starts that process
(:func:`colorot.em_process.prestart`), and the fit takes it; a fit that needs no EM ends it.
Everything else goes straight to :func:`colorot.cli.main`.
"""

from __future__ import annotations

import atexit
import signal
import sys


def main() -> None:
    """Run the command line; a ``kill`` (SIGTERM) stops it as Ctrl-C does (``interrupted``, exit 130:
    worker processes ended, temporary files removed), also while the modules are still importing."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if is_fit_command(sys.argv[1:]):
            from colorot import em_process

            em_process.prestart()
        from colorot.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:  # before a command's own handling (the imports) or after it
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _interrupt(signum: int, frame: object) -> None:
    """The first Ctrl-C or SIGTERM: a KeyboardInterrupt, which stops the command (the files in flight
    finish, atomically). The next one is ignored while it winds down: raised inside that (a pool's
    shutdown, the interpreter's exit), a second Ctrl-C, or ``timeout``'s SIGTERM to the process and
    its group, left half-written temp files, lost the ``interrupted`` line or printed tracebacks.
    A third ends the process at once, by the signal itself, as SIGKILL does (a wind-down that hangs
    can still be stopped from the keyboard). Once the interpreter exits, they are ignored: it puts
    back the default of a signal it handles, and a late one ended an interrupted run by the signal
    (exit −2) instead of with 130, its files already complete."""
    signal.signal(signal.SIGINT, _once_ignored)
    signal.signal(signal.SIGTERM, _once_ignored)
    atexit.register(_ignored_from_now)
    raise KeyboardInterrupt


def _ignored_from_now() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _once_ignored(signum: int, frame: object) -> None:
    """The second Ctrl-C or SIGTERM: ignored, the next one left to the system's default (the end)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def is_fit_command(args: list[str]) -> bool:
    """Whether the command line runs a fit: its first word that is not an option is ``fit``, and it
    asks for no help or version."""
    words = [arg for arg in args if not arg.startswith("-")]
    return bool(words) and words[0] == "fit" and not {"--help", "-h", "--version"} & set(args)
