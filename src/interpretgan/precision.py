"""Moved to :mod:`interpretgan.runtime.precision`; this name is an alias of it, kept for one
release."""
import sys

from .runtime import precision as _moved

sys.modules[__name__] = _moved
