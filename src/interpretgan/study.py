"""Moved to :mod:`interpretgan.robust.study`; this name is an alias of it, kept for one release."""
import sys

from .robust import study as _moved

sys.modules[__name__] = _moved
