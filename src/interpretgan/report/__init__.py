"""Reports from saved artifacts (JSON and saved explanations in; HTML, Markdown and PNG out):
the main job's report and figures (:mod:`.html`), the pooling study's report; never retrain.

This package re-exports the public names of its modules."""
from .html import (COLUMN_TITLES, EXPLANATIONS_NOTE, READING, SETTING_NOTES, UNRELIABLE_MARK,
                   acc_vul_chart, architecture_figure, critical_t, misclassification_heatmap,
                   study_bar_chart, study_markdown, verdict, write_main_report, write_study_report)  # noqa: F401
from ..interpret.explain import draw_explanations as rgb_explanation_grid  # noqa: F401 (its name of 0.1)
from ..runtime.figures import save_figure  # noqa: F401
