"""Moved to :mod:`interpretgan.run.pipeline`, :mod:`interpretgan.run.stages`,
:mod:`interpretgan.run.results`, :mod:`interpretgan.run.checks`,
:mod:`interpretgan.run.fit_job`, :mod:`interpretgan.models.loading`, :mod:`interpretgan.paper`;
this name forwards to them, kept for one release."""
from ._moved import forward

__getattr__, __dir__ = forward(__name__, "interpretgan.run.pipeline",
                               "interpretgan.run.stages",
                               "interpretgan.run.results",
                               "interpretgan.run.checks",
                               "interpretgan.run.fit_job",
                               "interpretgan.models.loading",
                               "interpretgan.paper")
