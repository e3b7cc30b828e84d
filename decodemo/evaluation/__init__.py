"""Measuring a detector on data, from normal data and labels that never choose its settings.

- :mod:`decodemo.evaluation.report`: every metric a folder layout allows (image, pixel,
  AUPRO, clip, pAUC), per kind and overall, with the no-diffusion ablation from the same run;
- :mod:`decodemo.evaluation.reference`: a model's normal reference (scores and map quantiles),
  the percentile of a score among it, and pixel thresholds for defect masks.
"""

from decodemo.evaluation.report import (ABLATION_WHAT, AblationView, collect_scores, diffusion_gain, evaluate,
                                        format_report, has_ablation, model_threshold)

__all__ = ["ABLATION_WHAT", "AblationView", "collect_scores", "diffusion_gain", "evaluate", "format_report",
           "has_ablation", "model_threshold"]
