"""Moved to :mod:`interpretgan.interpret.gan`; this name is an alias of it, kept for one release."""
import sys

from .interpret import gan as _moved

sys.modules[__name__] = _moved
