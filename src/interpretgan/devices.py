"""Moved to :mod:`interpretgan.runtime.devices`; this name is an alias of it, kept for one
release."""
import sys

from .runtime import devices as _moved

sys.modules[__name__] = _moved
