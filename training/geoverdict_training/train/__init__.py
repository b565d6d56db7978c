"""A training run: its config, data, loop, checkpoints, distributed set-up and export."""
