"""Moved to :mod:`interpretgan.interpret.fit`, :mod:`~interpretgan.interpret.members`,
:mod:`~interpretgan.interpret.explaining`, :mod:`interpretgan.run.fit_job`; this name forwards
to them, kept for one release."""
from ._moved import forward

__getattr__, __dir__ = forward(__name__, "interpretgan.interpret.fit", "interpretgan.interpret.members",
                              "interpretgan.interpret.explaining", "interpretgan.run.fit_job")
