"""``python -m colorot``: the same as the ``colorot`` command."""

from colorot.cli import main

main()
