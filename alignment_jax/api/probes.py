"""The probe for a notebook: `fit_probe` learns a linear transform from human triplets, as the probe stage does.

Settings are keyword arguments named as the fields of `probe` in alignment_jax/config/base.py (defaults from
there) and checked by the probe stage's own checks, so a bad value gets the command line's one-line message.
"""

import dataclasses
import difflib

import numpy as np

from alignment_jax import stages
from alignment_jax.api import arguments
from alignment_jax.config.base import base_config
from alignment_jax.config.files import type_problem
from alignment_jax.errors import InputError
from alignment_jax.probing.cross_validation import ProbeSettings, run_probe
from alignment_jax.probing.objective import DIVERGENCES
from alignment_jax.probing.transform import Transform

_DEFAULTS = base_config().probe


@dataclasses.dataclass(frozen=True)
class ProbeFit:
    """transform: the refit Transform (apply with `.apply(features)`); summary: results.json's `probe`
    section (best_lambda, cv_accuracy, cv_cross_entropy, test_accuracy, ...); sweep: one dict per trained
    configuration and fold; global_probe: with objective="glocal" and alpha 0 swept, the global probe beside."""

    transform: Transform
    summary: dict
    sweep: list[dict]
    global_probe: "ProbeFit | None" = None


def fit_probe(
    features,
    train,
    test=None,
    *,
    lambdas: tuple[float, ...] = tuple(_DEFAULTS.lambdas),
    folds: int = _DEFAULTS.folds,
    objective: str = _DEFAULTS.objective,
    regularizer: str = _DEFAULTS.regularizer,
    protocol: str = _DEFAULTS.protocol,
    seed: int = 0,
    local=None,
    targets=None,
    test_targets=None,
    progress: bool | str = False,
    **settings,
) -> ProbeFit:
    """Learns W (p, p) (+ bias) on standardized features so that the softmax over the three pair dot
    products of z = x W predicts the human odd one out, minimising

        mean_t -log softmax([z_i.z_j, z_i.z_k, z_j.z_k] / T)[0] + lambda R(W)

    with R = ||W||_F (frobenius, the paper's) unless `regularizer` says otherwise. Every lambda x fold (x lr,
    with objective="glocal" also x alpha x tau) trains in one compiled, vmapped program; the setting with the
    lowest mean validation cross-entropy over `folds` object-disjoint folds is refit on all of `train` and
    scored on `test`.

    features: (n, p); train: (T, 3) object indices, column 2 = the odd one out; test: (T', 3) or None;
    objective="kl" | "jsd" (AligNet's soft targets): targets (T, 3), test_targets (T', 3) are distributions over
    each triplet's pairs [(0, 1), (0, 2), (1, 2)] (`aj.load_alignet(path)[0].targets`, or human response
    distributions); the prediction is softmax(s / tau) over the pair similarities, `taus` swept like lambdas,
    and the loss KL(p || q) or JSD(p, q) + lambda R(W).
    local: (N, p) features of gLocal's local images (objective="glocal" only; validation images are drawn from
    them, `local_validation`). settings: any other field of the probe config (split, select_by, lrs, alphas,
    taus, optimizer, lr, batch_size, epochs, patience, bias, init, standardize, temperature, ...) and of
    probe.local as local_<name> (local_batch_size, local_validation, local_standardize).
    protocol: "fast" (full batch) or "paper" (Adam 1e-3, batch 256).
    """
    x = arguments.features(features)
    train = arguments.triplets(train, len(x), "train")
    test = None if test is None else arguments.triplets(test, len(x), "test")
    arguments.integer(seed, "seed", minimum=0, maximum=2**31 - 2)
    config = base_config()
    given = {"lambdas": lambdas, "folds": folds, "objective": objective, "regularizer": regularizer}
    given.update(protocol=protocol, **settings)
    for key, value in given.items():
        _set(config.probe, key, value)
    if local is not None:
        config.probe.local.features = "local"  # counted as given: the checks then expect a local set
    if config.probe.objective == "glocal" and local is None:
        raise InputError("objective='glocal' needs local=(N, p) features of the local images")
    soft = config.probe.objective in DIVERGENCES
    if soft != (targets is not None) or (test_targets is not None and targets is None):
        raise InputError(
            f"objective={config.probe.objective!r} "
            + ("needs targets=(T, 3) distributions" if soft else "takes no targets: use objective='kl' or 'jsd'")
        )
    if soft:  # the stage's checks expect AligNet's files: here the arrays stand for them
        config.alignet.train, config.alignet.features = "targets", "features"
    stages.load("probe").check(config)
    local_x = None if local is None else arguments.features(local, "local")
    if local_x is not None and local_x.shape[1] != x.shape[1]:
        raise InputError(f"local: {local_x.shape[1]} columns but the features have {x.shape[1]}")
    probe_settings = ProbeSettings.from_config(config.probe)
    result = run_probe(x, train, test, probe_settings, seed, progress, local_x, targets, test_targets)
    return _fit(result)


def _fit(result) -> ProbeFit:
    beside = _fit(result.global_probe) if result.global_probe is not None else None
    return ProbeFit(result.transform, result.summary, list(result.summary.get("sweep", [])), beside)


def _set(probe, key: str, value) -> None:
    """probe.<key> = value (local_<name>: probe.local.<name>), with the config's type rules; an unknown key
    names the closest field."""
    fields = [k for k in probe.keys() if k != "local"] + [f"local_{k}" for k in probe.local.keys()]
    if key not in fields or key in ("local_features", "local_images", "local_test_features"):
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; the settings are {', '.join(fields)}"
        raise InputError(f"fit_probe: unknown setting {key!r}{hint}")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    section, field = (probe.local, key[len("local_") :]) if key.startswith("local_") else (probe, key)
    if isinstance(section[field], tuple) and not isinstance(value, list | tuple):
        value = (value,)  # lambdas=0.1: one value
    try:
        section[field] = tuple(value) if isinstance(value, list) else value
    except TypeError as e:
        name = key.replace("local_", "local.", 1)
        raise InputError(f"probe.{name}={value!r}: {type_problem(section, field)}") from e
