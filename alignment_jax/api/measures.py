"""Measures of alignment for a notebook: odd-one-out accuracy, the human noise ceiling, RSA.

Each function checks its inputs as the command line checks files (api/arguments.py) and raises
`alignment_jax.InputError` with a one-line message; the results are frozen dataclasses.
"""

import dataclasses

import numpy as np

from alignment_jax.api import arguments
from alignment_jax.data.levels import Levels
from alignment_jax.data.rsm_datasets import RSMDataset
from alignment_jax.errors import InputError
from alignment_jax.evaluation import levels as levels_math
from alignment_jax.evaluation import noise_ceiling as ceiling
from alignment_jax.evaluation import rsa as rsa_math
from alignment_jax.evaluation import zero_shot
from alignment_jax.evaluation.similarity import KINDS
from alignment_jax.evaluation.zero_shot import ZeroShotResult

NoiseCeiling = ceiling.NoiseCeiling


def odd_one_out(
    features, triplets, similarity: str = "cosine", *, bootstrap: int = 1000, seed: int = 0
) -> ZeroShotResult:
    """Zero-shot odd-one-out accuracy: per triplet (i, j, k) the model keeps the pair of highest similarity
    s(a, b) (cosine: <x_a, x_b> / (|x_a| |x_b|); dot; euclidean: -|x_a - x_b|) and calls the third object odd.

    features: (n, p); triplets: (T, 3) object indices, column 2 = the human odd one out.
    Returns `.accuracy` = mean over triplets of [s_ij > s_ik and s_ij > s_jk] (ties count wrong),
    `.ci95` (percentile bootstrap over triplets, `bootstrap` resamples; (nan, nan) for 0), `.correct` (T,) and
    `.choices` (T,), the object the model calls odd.
    """
    x = arguments.features(features)
    checked = arguments.triplets(triplets, len(x))
    arguments.choice(similarity, "similarity", KINDS)
    arguments.integer(bootstrap, "bootstrap", minimum=0)
    arguments.integer(seed, "seed", minimum=0)
    return zero_shot.odd_one_out(x, checked, similarity, bootstrap, seed)


def noise_ceiling(triplets, n_objects: int, *, bootstrap: int = 1000, seed: int = 0) -> NoiseCeiling:
    """How often one person's odd one out agrees with the majority answer to the same three objects:
    sum_s majority_s / sum_s responses_s over the sets of three objects asked at least twice in `triplets`
    (T, 3) (any order of the objects; column 2 = the odd one out). `.accuracy` is nan without repeated sets;
    `.ci95` is a percentile bootstrap over sets."""
    arguments.integer(n_objects, "n_objects", minimum=3)
    checked = arguments.triplets(triplets, n_objects)
    arguments.integer(bootstrap, "bootstrap", minimum=0)
    arguments.integer(seed, "seed", minimum=0)
    return ceiling.noise_ceiling(checked, n_objects, bootstrap, seed)


@dataclasses.dataclass(frozen=True)
class RSAResult:
    """Correlations over the upper triangle of the model's and the people's (n, n) similarity matrices;
    the intervals are percentile bootstraps over stimuli ((nan, nan) without resamples)."""

    spearman: float
    pearson: float
    spearman_ci95: tuple[float, float]
    pearson_ci95: tuple[float, float]
    kernel: str
    n_stimuli: int


def rsa(
    features, human_rsm, *, kernel: str = "cosine", kind: str = "similarity", bootstrap: int = 0, seed: int = 0
) -> RSAResult:
    """Representational similarity analysis: features (n, p) -> the model's RSM (n, n) under `kernel`
    (cosine of the rows, or pearson: cosine of the mean-centred rows), correlated with `human_rsm` (n, n)
    over the n (n - 1) / 2 pairs above the diagonal (Spearman's rho and Pearson's r). kind: "similarity"
    (higher = more alike) or "dissimilarity" (negated first)."""
    x = arguments.features(features)
    arguments.choice(kernel, "kernel", rsa_math.KERNELS)
    arguments.choice(kind, "kind", rsa_math.HUMAN_KINDS)
    arguments.integer(bootstrap, "bootstrap", minimum=0)
    arguments.integer(seed, "seed", minimum=0)
    human = RSMDataset("human_rsm", np.asarray(human_rsm), kind, (), "human_rsm")
    if human.n_stimuli != len(x):
        raise InputError(
            f"human_rsm: {human.n_stimuli} stimuli but the features have {len(x)} rows; row i must be stimulus i"
        )
    model = rsa_math.model_rsm(x, kernel)
    values = rsa_math.correlate_rsms(model, human.similarity)
    nan = (float("nan"), float("nan"))
    intervals = rsa_math.bootstrap_ci(model, human.similarity, bootstrap, seed) if bootstrap else {}
    return RSAResult(
        values["spearman"],
        values["pearson"],
        intervals.get("spearman", nan),
        intervals.get("pearson", nan),
        kernel,
        len(x),
    )


def levels_metrics(
    features, levels: Levels, similarity: str = "cosine", *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Alignment on Levels per abstraction level and for "all" (docs/levels.md): accuracy over every kept human
    response with its bootstrap ci95 over triplets, the leave-one-out noise_ceiling, and the model's uncertainty
    softmax(s / T) over the three images (T fitted per level: temperature, nll) against the people's
    (entropy_spearman, rt_spearman). features: (n_images, p), row i = levels.images[i]."""
    if not isinstance(levels, Levels):
        raise InputError(f"levels_metrics: levels is a {type(levels).__name__}; read it with load_levels(root)")
    x = arguments.features(features, n_rows=len(levels.images))
    arguments.choice(similarity, "similarity", KINDS)
    arguments.integer(bootstrap, "bootstrap", minimum=0)
    arguments.integer(seed, "seed", minimum=0)
    return levels_math.levels_metrics(x, levels, similarity, bootstrap, seed)
