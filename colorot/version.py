"""The package version (its own module, so that modules needing it import no other part of colorot)."""

__version__ = "0.2.0"
