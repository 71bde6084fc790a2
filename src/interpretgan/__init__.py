"""interpretgan: see how adversarial perturbations travel through a classifier, layer by layer.

Modules: ``data`` (datasets), ``models`` (classifier zoo), ``layers`` (naming and tapping
hidden layers), ``attacks`` (FGSM/PGD/M-PGD), ``training`` (natural and adversarial
training steps and loop), ``evaluate``, ``config`` (dataclasses and presets), ``runs``
(run folders, atomic checkpoints), ``cli``.
"""
__version__ = "0.1.0"
