"""Moved to :mod:`interpretgan.diagnosis.diagnose`; this name is an alias of it, kept for one
release."""
import sys

from .diagnosis import diagnose as _moved

sys.modules[__name__] = _moved
