"""Explaining hidden layers (Section 3 of the paper): naming and tapping layers
(:mod:`.layers`), the compression net C and the progressive G/D pairs with their losses
(:mod:`.gan`, Eq. 1–4), the fit of one generator per layer and seed (:mod:`.fit`) with its
:class:`~.config.FitConfig` presets, the explainer loop (:mod:`.explainer`), explanation
grids and baselines (:mod:`.explain`) and the quality of generated images (:mod:`.metrics`:
KID)."""
