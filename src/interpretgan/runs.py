"""Moved to :mod:`interpretgan.runtime.runs`; this name is an alias of it, kept for one release."""
import sys

from .runtime import runs as _moved

sys.modules[__name__] = _moved
