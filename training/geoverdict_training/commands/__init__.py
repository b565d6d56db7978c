"""The training half's subcommands of `geoverdict` (argument parsing only)."""
