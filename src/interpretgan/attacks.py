"""Moved to :mod:`interpretgan.robust.attacks`, :mod:`interpretgan.robust.evaluate`; this name
forwards to them, kept for one release."""
from ._moved import forward

__getattr__, __dir__ = forward(__name__, "interpretgan.robust.attacks",
                               "interpretgan.robust.evaluate")
