"""geoverdict_stack."""
