"""Moved to :mod:`interpretgan.robust.evaluate`; this name is an alias of it, kept for one
release."""
import sys

from .robust import evaluate as _moved

sys.modules[__name__] = _moved
