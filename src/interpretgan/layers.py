"""Moved to :mod:`interpretgan.interpret.layers`; this name is an alias of it, kept for one
release."""
import sys

from .interpret import layers as _moved

sys.modules[__name__] = _moved
