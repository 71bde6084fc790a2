"""Moved to :mod:`interpretgan.robust.training`, :mod:`interpretgan.robust.methods`,
:mod:`interpretgan.models.zoo`; this name forwards to them, kept for one release."""
from ._moved import forward

__getattr__, __dir__ = forward(__name__, "interpretgan.robust.training",
                               "interpretgan.robust.methods",
                               "interpretgan.models.zoo")
