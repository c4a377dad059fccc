"""The package version (its own module, so that modules needing it import no other part of colorot)."""

__version__ = "0.3.0.dev0"  # until 0.3.0 is released: checkpoints written now are told from 0.2.0's
