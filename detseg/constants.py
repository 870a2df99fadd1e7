"""Constants shared across layers."""

IGNORE_INDEX = 255
"""Semantic-map value for unlabeled pixels: they count neither as right nor as wrong."""
