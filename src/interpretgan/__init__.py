"""interpretgan: see how adversarial perturbations travel through a classifier, layer by layer.

Modules, from the bottom up: ``registry`` (name → factory), ``config`` (dataclasses and
presets), ``runs`` (run folders, atomic checkpoints), ``progress``, ``devices`` and
``precision`` (where and in which float format work runs), ``distributed`` (ranks and
sharding), ``data`` (datasets), ``models`` (classifier zoo), ``layers`` (naming and tapping
hidden layers), ``attacks`` (FGSM/PGD/M-PGD), ``training`` (natural and adversarial training),
``evaluate``, ``gan`` (InterpretGAN networks and losses), ``fitting`` (fitting the generators),
``metrics`` (KID), ``diagnose`` (D*, Acc_i/Vul_i, max-pool index change), ``explain``
(explanation grids and Captum baselines), ``study`` (the pooling study), ``report``
(Markdown, HTML and figures from saved results), ``pipeline`` (the main job, ``interpretgan
run``) and ``cli``.
"""
__version__ = "0.1.0"
