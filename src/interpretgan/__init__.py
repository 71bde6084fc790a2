"""interpretgan: see how adversarial perturbations travel through a classifier, layer by layer.

Parts, from the bottom up (each imports only from itself and the parts below it; the map is
docs/design.md): ``registry``, ``settings`` (config machinery), ``paper`` (the paper's
reference numbers), ``runtime`` (run folders and checkpoints, devices, precision, ranks,
progress), ``data``, ``models`` (the zoo, wrappers, loading any classifier), ``robust``
(attacks, training methods and loop, evaluation, the pooling study), ``interpret`` (layers,
G/C/D and their losses, the fit, the explainer, explanation grids, KID), ``diagnosis`` (D*,
Acc_i/Vul_i, max-pool index change), ``report``, ``run`` (the main job, ``interpretgan run``)
and ``cli``. The flat module names of 0.1 (``interpretgan.gan``, ``interpretgan.pipeline``, …)
still import, for one release (``interpretgan.diagnose`` is now the function below; the module
of that name is :mod:`interpretgan.diagnosis`).

The library's face: :class:`Explainer` (fit, explain, label, save and load the generators of
one classifier's layers) and :func:`diagnose` (Acc_i / Vul_i of a model on images, as a
:class:`Diagnosis`).
"""
from .diagnosis.api import Diagnosis, diagnose
from .interpret.explainer import Explainer

__version__ = "0.1.0"
__all__ = ["Diagnosis", "Explainer", "diagnose"]
