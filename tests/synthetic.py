"""Synthetic data for the engine tests: clustered vectors, so that nearest neighbours, cells and
sketches have structure to find."""

from __future__ import annotations

import numpy as np


def clustered(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``d`` dimensions around 8 random centres (unit noise, centres 3x wider), and
    each row's cluster."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((8, d)).astype(np.float32) * 3
    group = rng.integers(0, 8, n)
    return (centers[group] + rng.standard_normal((n, d)).astype(np.float32)), group


def clustered_and_noise(n: int, d: int, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The two data sets a calibration must tell apart: ``n`` clustered rows and ``n`` rows of
    structureless noise."""
    noise = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return clustered(n, d, seed)[0], noise
