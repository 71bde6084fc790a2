"""Moved to :mod:`interpretgan.runtime.distributed`, :mod:`interpretgan.interpret.fit`; this name
forwards to them, kept for one release."""
from ._moved import forward

__getattr__, __dir__ = forward(__name__, "interpretgan.runtime.distributed",
                               "interpretgan.interpret.fit")
