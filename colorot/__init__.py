"""colorot: colour transfer as optimal transport with monotone gradient networks.

>>> from colorot import ColorTransfer, load
>>> ct = ColorTransfer(model="mmgn", target="gmm").fit("day.jpg", "sunset.jpg")  # doctest: +SKIP
>>> graded = ct.transform(pixels)  # doctest: +SKIP
>>> ct.save("model.pt"); ct = load("model.pt")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from colorot.transfer import ColorTransfer, load  # noqa: E402

__all__ = ["ColorTransfer", "load", "__version__"]
