"""The network: the backbone registry, the multitask geo model, its loss."""
