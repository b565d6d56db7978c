"""Train / validation split by photographer: one author's photos share places and style, so a
random split of photos leaks; holding whole authors out measures what users will see.

Deterministic: the same manifest, fraction and seed give the same split on any machine (authors
are sorted before a seeded permutation), so a model card's validation set is reproducible.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.exceptions import ConfigError


class Split(NamedTuple):
    """Manifests of the training and the validation photos."""

    train: Manifest
    val: Manifest


def split_by_author(manifest: Manifest, val_fraction: float, seed: int = 0) -> Split:
    """Hold out whole authors, in a seeded random order, until `val_fraction` of the photos."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    everything = np.arange(len(manifest), dtype=np.int64)
    if val_fraction == 0:
        return Split(manifest, manifest.subset(everything[:0]))
    if manifest.authors is None:
        raise ConfigError(
            "the manifest has no AUTHOR column: a validation split needs photographers "
            "(or give a separate validation manifest)"
        )
    authors = np.array(manifest.authors, dtype=object)  # (N,)
    names = sorted(set(manifest.authors))
    order = np.random.default_rng(seed).permutation(len(names))
    target = val_fraction * len(manifest)
    counts = {name: int(n) for name, n in zip(*np.unique(authors, return_counts=True), strict=True)}
    held_out: set[str] = set()
    photos = 0
    for k in order:
        if photos >= target:
            break
        held_out.add(names[k])
        photos += counts[names[k]]
    if len(held_out) == len(names):
        raise ConfigError(
            f"val_fraction {val_fraction} holds out every photographer ({len(names)}); lower it"
        )
    is_val = np.array([author in held_out for author in manifest.authors], dtype=bool)
    return Split(manifest.subset(everything[~is_val]), manifest.subset(everything[is_val]))
