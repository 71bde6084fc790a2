"""Diagnosing vulnerability (Section 4 of the paper): D*, the per-layer Acc_i/Vul_i, max-pool
index change and misclassification targets (:mod:`.diagnose`)."""
