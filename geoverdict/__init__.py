"""geoverdict: photo geolocation verdicts for image event streams."""

__version__ = "0.1.0"
