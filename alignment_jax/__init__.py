"""alignment_jax: measure and improve how well vision representations align with human similarity judgments.

The Python API, one import (`import alignment_jax as aj`); each name is loaded on first use:

    data      load_things(root), load_levels(root), load_alignet(train, test=""), make_world(seed=0, ...)
    models    load_model(name, checkpoint=""), extract_features(model, images, layers="") -> {layer: (n, p)}
    measures  odd_one_out(features, triplets, similarity="cosine"), noise_ceiling(triplets, n_objects),
              rsa(features, human_rsm), levels_metrics(features, levels)
    probes    fit_probe(features, train, test=None, *, lambdas=..., folds=3, ...), Transform (.load/.save/.apply)
    runs      get_config(name_or_path, **overrides), run(config, workdir)

Every function checks its inputs as the command line does and raises InputError (a ValueError) with one line.
"""

import importlib

__version__ = "0.1.0"

_API = {
    "load_things": "alignment_jax.api.data",
    "make_world": "alignment_jax.api.data",
    "load_levels": "alignment_jax.data.levels",
    "load_alignet": "alignment_jax.api.data",
    "levels_metrics": "alignment_jax.api.measures",
    "load_model": "alignment_jax.api.models",
    "extract_features": "alignment_jax.api.models",
    "odd_one_out": "alignment_jax.api.measures",
    "noise_ceiling": "alignment_jax.api.measures",
    "rsa": "alignment_jax.api.measures",
    "RSAResult": "alignment_jax.api.measures",
    "fit_probe": "alignment_jax.api.probes",
    "ProbeFit": "alignment_jax.api.probes",
    "Transform": "alignment_jax.probing.transform",
    "get_config": "alignment_jax.api.runs",
    "run": "alignment_jax.api.runs",
    "RunResult": "alignment_jax.api.runs",
    "InputError": "alignment_jax.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'alignment_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
