"""Moved to :mod:`interpretgan.models.loading`; this name is an alias of it, kept for one
release."""
import sys

from .models import loading as _moved

sys.modules[__name__] = _moved
