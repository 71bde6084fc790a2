"""Adversarial robustness: attacks (:mod:`.attacks`: FGSM, PGD, M-PGD, TRADES' KL attack),
training methods as step objects (:mod:`.methods`), the training loop (:mod:`.training`) and
its :class:`~.config.TrainConfig` presets, evaluation (:mod:`.evaluate`: clean and robust
accuracy) and the max- vs average-pooling study (:mod:`.study`)."""
