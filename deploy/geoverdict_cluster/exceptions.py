"""What `geoverdict cluster` reports in one line."""

from __future__ import annotations


class ClusterError(Exception):
    """A cluster step that cannot go on (a tool missing, a server not ready), in words."""
