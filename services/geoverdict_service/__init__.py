"""geoverdict_service."""
