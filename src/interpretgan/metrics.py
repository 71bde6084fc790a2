"""Moved to :mod:`interpretgan.interpret.metrics`; this name is an alias of it, kept for one
release."""
import sys

from .interpret import metrics as _moved

sys.modules[__name__] = _moved
