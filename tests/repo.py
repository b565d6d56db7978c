"""The checkout the tests belong to (the files they check: compose, dashboards, docs)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
