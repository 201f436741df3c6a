"""Alignment with the Levels triplets (alignment_jax/data/levels.py): accuracy per abstraction level against a
leave-one-out noise ceiling, and whether a model is uncertain where people are. Pure, vectorized functions:
no Python loop per triplet (bench/levels.py times the full release's size).

Per triplet (t, 3 images, column j = image j as the odd one out), with s the similarity of the two others
(z_j; zero_shot.similarity):
  the model's choice  argmax_j z_j, the image outside the most similar pair;
  accuracy            sum_t counts[t, choice_t] / sum_t n_t over the kept responses (n_t = 4-5 per triplet),
                      with a 95% percentile bootstrap interval over triplets;
  noise ceiling       per triplet, each response left out in turn and credited 1 / (number of tied choices)
                      when it is among the most frequent choices of the others; the mean over triplets (the
                      study's analysis: 0.5 on a two-way tie);
  temperature T       the minimiser of nll(T) = -(1 / N) sum_t sum_j counts[t, j] log softmax(z_t / T)_j,
                      found as beta = 1 / T (nll is convex in beta) by safeguarded Newton steps to a relative
                      precision far below 1e-4; None (an infinite T) when the model's choices predict the
                      responses no better than chance at any T (beta = 0 is the minimum);
  entropy_spearman    Spearman (average ranks for ties) over triplets between the entropy of softmax(z_t / T)
                      and that of the human response distribution counts[t] / n_t;
  rt_spearman         Spearman between the model's entropy and the triplet's mean log(rt in seconds).
"""

import warnings

import numpy as np
from scipy import stats

from alignment_jax.data.levels import Levels, level_masks
from alignment_jax.evaluation.similarity import check_kind, power_of_two_scale, triplet_similarities

METRICS = (
    "n_triplets", "n_responses", "accuracy", "ci95", "noise_ceiling", "temperature", "nll", "entropy_spearman",
    "rt_spearman",
)  # fmt: skip
MODEL_METRICS = ("accuracy", "ci95", "temperature", "nll", "entropy_spearman", "rt_spearman")  # depend on features
_NEWTON_STEPS = 100
_DOUBLINGS = 200


def choice_logits(features: np.ndarray, triplets: np.ndarray, similarity: str = "cosine") -> np.ndarray:
    """features: (n, p), triplets: (t, 3) -> z: (t, 3) float64, z[:, j] = similarity of the two images other
    than j (the evidence that j is the odd one out)."""
    check_kind(similarity)
    if similarity != "cosine":
        features = power_of_two_scale(features)  # a power of two: choices unchanged, squares stay finite
    pairs = triplet_similarities(features, triplets, similarity).astype(np.float64)  # [s01, s02, s12]
    return pairs[:, ::-1].copy()


def model_choice(z: np.ndarray) -> np.ndarray:
    """(t, 3) -> (t,) the column of the largest z (the first on an exact tie)."""
    return np.argmax(z, axis=1)


def accuracy(z: np.ndarray, counts: np.ndarray) -> float:
    """Fraction of the responses (counts (t, 3)) that chose the model's odd one out."""
    hits = np.take_along_axis(counts, model_choice(z)[:, None], axis=1)[:, 0]
    return float(hits.sum() / counts.sum())


def accuracy_ci(hits: np.ndarray, responses: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of sum(hits) / sum(responses) when the t triplets are resampled with
    replacement; (nan, nan) for t = 0 or no resamples.

    A triplet enters only through its pair (responses, hits), which takes few distinct values (4-5 responses:
    at most 21), so a resample is one multinomial draw of t over those categories: exactly the triplet
    bootstrap's distribution, with n_resamples x categories work instead of n_resamples x t.
    """
    hits, responses = np.asarray(hits, np.int64), np.asarray(responses, np.int64)
    if not len(hits) or n_resamples <= 0:
        return (float("nan"), float("nan"))
    categories, frequency = np.unique(np.stack([responses, hits], axis=1), axis=0, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(len(hits), frequency / len(hits), size=n_resamples)
    ratios = (draws @ categories[:, 1]) / (draws @ categories[:, 0])
    low, high = np.percentile(ratios, [2.5, 97.5])
    return (float(low), float(high))


def noise_ceiling(counts: np.ndarray) -> float:
    """counts: (t, 3) responses per odd-one-out column -> the leave-one-out ceiling (module docstring)."""
    counts = np.asarray(counts, np.int64)
    n = counts.sum(axis=1)
    others = counts[:, None, :] - np.eye(3, dtype=np.int64)[None]  # (t, left-out choice j, 3): the others' counts
    top = others.max(axis=2, keepdims=True)
    tied = (others == top).sum(axis=2)  # (t, j)
    credit = np.where(np.take_along_axis(others, np.arange(3)[None, :, None], axis=2)[..., 0] == top[..., 0], 1.0, 0.0)
    per_triplet = (counts * credit / tied).sum(axis=1) / n
    return float(per_triplet.mean())


def _softmax(z: np.ndarray, beta: float) -> np.ndarray:
    logits = beta * z
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def nll(z: np.ndarray, counts: np.ndarray, temperature: float | None) -> float:
    """Mean negative log-likelihood of the responses under softmax(z / T); T None = infinite (uniform)."""
    beta = 0.0 if temperature is None else 1.0 / temperature
    logits = beta * z
    top = logits.max(axis=1, keepdims=True)
    log_p = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return float(-(counts * log_p).sum() / counts.sum())


def _slope_and_curvature(z: np.ndarray, counts: np.ndarray, beta: float) -> tuple[float, float]:
    """d nll / d beta and d^2 nll / d beta^2 at beta (nll as a function of beta = 1 / T)."""
    p = _softmax(z, beta)
    n = counts.sum(axis=1)
    mean = (p * z).sum(axis=1)
    variance = (p * (z - mean[:, None]) ** 2).sum(axis=1)
    total = counts.sum()
    return float(((n * mean).sum() - (counts * z).sum()) / total), float((n * variance).sum() / total)


def fit_temperature(z: np.ndarray, counts: np.ndarray) -> float | None:
    """The T > 0 minimising nll(z, counts, T) (module docstring); None when the minimum is at T = infinity."""
    z = np.asarray(z, np.float64)
    counts = np.asarray(counts, np.float64)
    slope, _ = _slope_and_curvature(z, counts, 0.0)
    if slope >= 0:
        return None
    spread = float(np.max(z.max(axis=1) - z.min(axis=1)))
    if spread <= 0:
        return None
    low, high = 0.0, 1.0 / spread
    for _ in range(_DOUBLINGS):  # bracket the minimum: the slope turns positive
        if _slope_and_curvature(z, counts, high)[0] > 0:
            break
        low, high = high, 2 * high
    beta = 0.5 * (low + high)
    for _ in range(_NEWTON_STEPS):
        slope, curvature = _slope_and_curvature(z, counts, beta)
        if abs(slope) < 1e-15:  # the minimum (a slope of exactly 0.0 too: Newton's step would not move)
            break
        if slope > 0:
            high = beta
        else:
            low = beta
        step = beta - slope / curvature if curvature > 0 else np.nan
        beta = step if low < step < high else 0.5 * (low + high)  # Newton inside the bracket, else bisect
        if high - low <= 1e-12 * high:
            break
    return 1.0 / beta


def entropy(p: np.ndarray) -> np.ndarray:
    """(t, k) probabilities -> (t,) natural-log entropy (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def human_entropy(counts: np.ndarray) -> np.ndarray:
    """(t, 3) response counts -> (t,) entropy of each triplet's response distribution."""
    counts = np.asarray(counts, np.float64)
    return entropy(counts / counts.sum(axis=1, keepdims=True))


def model_entropy(z: np.ndarray, temperature: float | None) -> np.ndarray:
    """(t, 3) -> (t,) entropy of softmax(z / T) (log 3 everywhere for T None)."""
    return entropy(_softmax(np.asarray(z, np.float64), 0.0 if temperature is None else 1.0 / temperature))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho with average ranks for ties (scipy.stats.spearmanr); None for fewer than 3 values or a
    constant side."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(a, b).statistic
    return None if not np.isfinite(rho) else float(rho)


def subset_metrics(
    z: np.ndarray, counts: np.ndarray, mean_log_rt: np.ndarray, bootstrap: int = 1000, seed: int = 0
) -> dict:
    """The metrics (METRICS) of the triplets z (t, 3), counts (t, 3), mean_log_rt (t,); results.json-ready
    (None, not NaN)."""
    t = len(z)
    if not t:
        return {"n_triplets": 0, "n_responses": 0, **{k: None for k in METRICS[2:]}, "ci95": [None, None]}
    responses = counts.sum(axis=1)
    hits = np.take_along_axis(counts, model_choice(z)[:, None], axis=1)[:, 0]
    temperature = fit_temperature(z, counts)
    entropy_now = model_entropy(z, temperature)
    return {
        "n_triplets": int(t),
        "n_responses": int(responses.sum()),
        "accuracy": float(hits.sum() / responses.sum()),
        "ci95": [None if np.isnan(v) else v for v in accuracy_ci(hits, responses, bootstrap, seed)],
        "noise_ceiling": noise_ceiling(counts),
        "temperature": temperature,
        "nll": nll(z, counts, temperature),
        "entropy_spearman": spearman(entropy_now, human_entropy(counts)),
        "rt_spearman": spearman(entropy_now, mean_log_rt),
    }


def levels_metrics(
    features: np.ndarray, levels: Levels, similarity: str = "cosine", bootstrap: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """features: (n_images, p), row i = levels.images[i] -> {level name or "all": subset_metrics}."""
    z = choice_logits(features, levels.triplets, similarity)
    return {
        name: subset_metrics(z[mask], levels.counts[mask], levels.mean_log_rt[mask], bootstrap, seed)
        for name, mask in level_masks(levels).items()
    }


def entropy_curves(features: np.ndarray, levels: Levels, metrics: dict[str, dict], similarity: str = "cosine") -> dict:
    """Per level: the distinct human entropies (few: 4-5 responses) and the mean model entropy (at the level's
    fitted T) of the triplets with each: {level: {"human_entropy": [...], "model_entropy": [...], "n_triplets":
    [...]}} (the report's entropy plot)."""
    z = choice_logits(features, levels.triplets, similarity)
    human = np.round(human_entropy(levels.counts), 9) + 0.0  # no -0.0
    curves = {}
    for name, mask in level_masks(levels).items():
        if not mask.any():
            continue
        values, inverse, sizes = np.unique(human[mask], return_inverse=True, return_counts=True)
        model = model_entropy(z[mask], metrics[name]["temperature"])
        curves[name] = {
            "human_entropy": values.tolist(),
            "model_entropy": (np.bincount(inverse, model, minlength=len(values)) / sizes).tolist(),
            "n_triplets": sizes.tolist(),
        }
    return curves
