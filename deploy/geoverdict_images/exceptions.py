"""What `geoverdict images` reports in one line."""

from __future__ import annotations


class ImagesError(Exception):
    """A build or a check that cannot go on (podman missing, a failed step), in words."""
