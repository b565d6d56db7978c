"""Labelled photos: manifests, labels, shards, splits by photographer, torch datasets."""
