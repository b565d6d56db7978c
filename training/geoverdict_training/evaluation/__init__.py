"""How good a model is: accuracy at the literature's thresholds, reliability, calibration."""
