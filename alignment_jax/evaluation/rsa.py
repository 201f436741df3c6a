"""Representational similarity analysis: a model's RSM against a human one, over the upper triangle.

A model RSM is the (n, n) similarity of its features under a kernel: `cosine` (cosine of the feature
vectors) or `pearson` (correlation of the feature vectors, i.e. cosine after centring each row). Human
judgments come as similarities or dissimilarities; `as_similarity` turns either into "higher = more
similar" (a dissimilarity is negated, so correlations keep their sign). The two matrices are compared by
Spearman's rho and Pearson's r over the strict upper triangle (k = 1), as in thingsvision's
`correlate_rdms`; the bootstrap resamples stimuli, not pairs.
"""

import warnings

import numpy as np
from scipy import stats

from alignment_jax.errors import InputError

KERNELS = ("cosine", "pearson")
HUMAN_KINDS = ("similarity", "dissimilarity")


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise InputError(f"transfer.kernels: {kernel!r} is not one of {', '.join(KERNELS)}")
    return kernel


def model_rsm(features: np.ndarray, kernel: str = "cosine") -> np.ndarray:
    """features: (n, p) -> (n, n) float64 similarity under `kernel`; an all-zero (or constant) row gives 0."""
    x = np.asarray(features, np.float64)
    if check_kernel(kernel) == "pearson":
        x = x - x.mean(axis=1, keepdims=True)
    largest = np.max(np.abs(x), axis=1, keepdims=True)  # first to a largest |value| of 1: norms at any scale
    x = x / np.where(largest > 0, largest, 1.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1.0, norms)
    return x @ x.T


def as_similarity(matrix: np.ndarray, kind: str) -> np.ndarray:
    """matrix: (n, n) human judgments of `kind` -> (n, n) with higher = more similar."""
    if kind not in HUMAN_KINDS:
        raise ValueError(f"kind must be one of {HUMAN_KINDS}, got {kind!r}")
    matrix = np.asarray(matrix, np.float64)
    return -matrix if kind == "dissimilarity" else matrix


def upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """matrix: (n, n) -> (n (n - 1) / 2,) entries above the diagonal, row by row (MATLAB `pdist` order)."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return np.asarray(matrix)[rows, cols]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two (m,) vectors; nan when either is constant."""
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two (m,) vectors: Pearson's r of their ranks (ties get the average rank)."""
    return pearson(stats.rankdata(x), stats.rankdata(y))


def correlate_rsms(model: np.ndarray, human_similarity: np.ndarray) -> dict[str, float]:
    """model, human_similarity: (n, n) -> {"spearman", "pearson"} over the upper triangle."""
    if model.shape != human_similarity.shape:
        raise ValueError(f"RSM shapes differ: model {model.shape}, human {human_similarity.shape}")
    x, y = upper_triangle(model), upper_triangle(human_similarity)
    return {"spearman": spearman(x, y), "pearson": pearson(x, y)}


def bootstrap_ci(
    model: np.ndarray,
    human_similarity: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk: int = 64,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of {"spearman", "pearson"} when the n stimuli are resampled with replacement.

    model, human_similarity: (n, n). A resample draws n stimulus indices; its pairs are the upper-triangle
    positions (a, b) of the draw, and a pair that draws the same stimulus twice (a diagonal entry) is left
    out. Each pair is read from the upper triangle of both matrices, as `correlate_rsms` does, so entries
    below the diagonal never matter. Vectorized over `chunk` resamples at a time. When every resample
    gives nan (a constant RSM) the interval is (nan, nan).
    """
    n = model.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {"spearman": [], "pearson": []}
    for start in range(0, n_resamples, chunk):
        index = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        a, b = index[:, rows], index[:, cols]  # (chunk, pairs)
        a, b = np.minimum(a, b), np.maximum(a, b)  # a draw may put the pair below the diagonal
        valid = a != b
        x, y = model[a, b], human_similarity[a, b]
        draws["pearson"].append(_masked_pearson(x, y, valid))
        # Left-out pairs rank above every kept pair (inf), so kept pairs get their ranks among themselves.
        rank_x = stats.rankdata(np.where(valid, x, np.inf), axis=1)
        rank_y = stats.rankdata(np.where(valid, y, np.inf), axis=1)
        draws["spearman"].append(_masked_pearson(rank_x, rank_y, valid))
    intervals = {}
    for name, values in draws.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all nan: a constant RSM
            lo, hi = np.nanpercentile(np.concatenate(values), [2.5, 97.5])
        intervals[name] = (float(lo), float(hi))
    return intervals


def _masked_pearson(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise Pearson's r of (r, m) arrays over the entries where mask is True -> (r,)."""
    weights = mask.astype(np.float64)
    count = weights.sum(axis=1, keepdims=True)
    x = np.where(mask, x, 0.0)
    y = np.where(mask, y, 0.0)
    dx = (x - (weights * x).sum(axis=1, keepdims=True) / count) * weights
    dy = (y - (weights * y).sum(axis=1, keepdims=True) / count) * weights
    denominator = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (dx * dy).sum(axis=1) / denominator, np.nan)
