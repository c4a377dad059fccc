"""The package version (its own module, so that modules needing it import no other part of colorot)."""

__version__ = "0.1.0"
