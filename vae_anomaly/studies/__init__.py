"""The detection suite and the reconstruction-detection trade-off study, both through the pipeline's own functions."""
