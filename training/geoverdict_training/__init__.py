"""geoverdict_training."""
