"""Images of synthetic objects rendered from their concept embedding, so a vision model has something to see.

Concept c is a coloured blob at its own place on a grid; its brightness follows the object's weight on
c. Every rendering adds nuisance a model must learn to ignore: a random low-frequency background and a
small random shift of each blob, so two renderings of one object differ while keeping its concepts.
"""

import numpy as np


def _concept_layout(n_concepts: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Blob centres (d, 2) in pixels on a square grid, and colours (d, 3) in [0, 1] spread over hues."""
    side = int(np.ceil(np.sqrt(n_concepts)))
    cell = size / side
    index = np.arange(n_concepts)
    centres = np.stack([(index // side + 0.5) * cell, (index % side + 0.5) * cell], axis=1)
    hue = index / n_concepts * 2 * np.pi
    colours = 0.5 + 0.5 * np.stack([np.cos(hue), np.cos(hue - 2.1), np.cos(hue + 2.1)], axis=1)
    return centres, colours


def render(
    embedding: np.ndarray, size: int = 32, seed: int = 0, jitter: float = 1.0, background: float = 0.25
) -> np.ndarray:
    """embedding: (n, d) non-negative -> images (n, size, size, 3) uint8."""
    return render_with_background(embedding, size, seed, jitter, background)[0]


def render_with_background(
    embedding: np.ndarray, size: int = 32, seed: int = 0, jitter: float = 1.0, background: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """-> (images (n, size, size, 3) uint8, the coarse random background (n, 4, 4, 3) in [0, 1])."""
    n, d = embedding.shape
    rng = np.random.default_rng(seed)
    centres, colours = _concept_layout(d, size)
    radius = 0.3 * size / np.ceil(np.sqrt(d))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shifted = centres[None] + jitter * rng.normal(size=(n, d, 2))  # (n, d, 2)
    dist2 = (yy[None, None] - shifted[..., 0, None, None]) ** 2 + (xx[None, None] - shifted[..., 1, None, None]) ** 2
    blobs = np.exp(-dist2 / (2 * radius**2))  # (n, d, size, size)
    strength = embedding / max(float(np.percentile(embedding[embedding > 0], 90)), 1e-12)
    image = np.einsum("nd,ndyx,dc->nyxc", strength, blobs, colours)
    coarse = rng.random((n, 4, 4, 3))
    image += background * np.kron(coarse, np.ones((1, size // 4 + 1, size // 4 + 1, 1)))[:, :size, :size]
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), coarse
