"""The main job, ``interpretgan run``: its :class:`~.config.RunConfig` presets and rules, the
stages and their cache (:mod:`.stages`), the job itself (:mod:`.pipeline`), the assembly of
``results.json`` (:mod:`.results`) and the ``interpretgan fit`` job (:mod:`.fit_job`)."""
