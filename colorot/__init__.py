"""colorot: colour transfer as optimal transport with monotone gradient networks.

>>> from colorot import ColorTransfer, load
>>> ct = ColorTransfer(model="mmgn", target="gmm").fit("day.jpg", "sunset.jpg")  # doctest: +SKIP
>>> graded = ct.transform(pixels)  # doctest: +SKIP
>>> ct.save("model.pt"); ct = load("model.pt")  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from colorot.version import __version__

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports them on first use
    from colorot.matching import match
    from colorot.transfer import ColorTransfer, load

__all__ = ["ColorTransfer", "load", "match", "__version__"]


def __getattr__(name: str) -> object:
    """``ColorTransfer`` and ``load`` come from :mod:`colorot.transfer`, ``match`` from
    :mod:`colorot.matching`, on first use, so that importing colorot (and starting its CLI) does
    not import torch."""
    if name in ("ColorTransfer", "load"):
        from colorot import transfer

        return getattr(transfer, name)
    if name == "match":
        from colorot.matching import match

        return match
    raise AttributeError(f"module 'colorot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "ColorTransfer", "load", "match"])
