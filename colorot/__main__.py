"""``python -m colorot``: the same as the ``colorot`` command."""

from colorot.launcher import main

main()
