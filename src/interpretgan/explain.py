"""Moved to :mod:`interpretgan.interpret.explain`; this name is an alias of it, kept for one
release."""
import sys

from .interpret import explain as _moved

sys.modules[__name__] = _moved
