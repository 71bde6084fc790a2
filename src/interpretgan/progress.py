"""Moved to :mod:`interpretgan.runtime.progress`; this name is an alias of it, kept for one
release."""
import sys

from .runtime import progress as _moved

sys.modules[__name__] = _moved
