"""What the stages of one run share: the config, the workdir, inputs loaded once, results so far."""

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from alignment_jax import atomic
from alignment_jax.data.features import load_features
from alignment_jax.data.triplets import ThingsData, load_things
from alignment_jax.errors import InputError
from alignment_jax.probing.transform import Transform


class RunContext:
    """Lazily loaded inputs of a run and the results.json it writes.

    features: THINGS features (n_objects, p), from `config.features` or from the extract stage
      (which sets `features_path`).
    things: the THINGS triplets (train/test/object ids).
    transform: the learned transform in `workdir/transform.npz`, once the probe stage wrote it.
    With model.layers (set by the extract stage): `layer`, the main layer (model.layer), and `layer_paths`,
    {layer: features file} of every layer in network order (`layers`), read by `layer_features(layer)`; each
    layer's transform is `layer_transform_path(layer)`.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.results_path = os.path.join(workdir, "results.json")
        self.results: dict[str, Any] = _read_json(self.results_path)
        self.features_path: str = config.features
        self.summary: list[str] = []
        self._features: np.ndarray | None = None
        self._things: ThingsData | None = None
        self.layer = ""
        self.layer_paths: dict[str, str] = {}
        self._layer_features: dict[str, np.ndarray] = {}

    @property
    def things(self) -> ThingsData:
        if self._things is None:
            things = self.config.things
            n_objects = self.features.shape[0] if self.features_path else None
            self._things = load_things(
                things.root, things.train, things.test, things.objects, n_objects=n_objects, one_based=things.one_based
            )
        return self._things

    @property
    def features(self) -> np.ndarray:
        if self._features is None:
            if not self.features_path:
                raise InputError(
                    "no features: set features=X.npy (n_objects x p) or a model and images to extract them"
                )
            self._features = load_features(self.features_path)
        return self._features

    @property
    def layers(self) -> list[str]:
        """The layers of model.layers in network order ([] without it)."""
        return list(self.layer_paths)

    def layer_features(self, layer: str) -> np.ndarray:
        """(n_objects, p) features of `layer` (of model.layers)."""
        path = self.layer_paths[layer]
        if path == self.features_path:
            return self.features
        if layer not in self._layer_features:
            self._layer_features[layer] = load_features(path)
        return self._layer_features[layer]

    def layer_transform_path(self, layer: str) -> str:
        """workdir/transforms/<layer>/transform.npz (the gLocal repository's layout)."""
        return os.path.join(self.workdir, "transforms", layer, "transform.npz")

    @property
    def transform_path(self) -> str:
        return os.path.join(self.workdir, "transform.npz")

    @property
    def transform(self) -> Transform | None:
        return Transform.load_npz(self.transform_path) if os.path.exists(self.transform_path) else None

    def log(self, line: str) -> None:
        """A line of the readable summary (printed by the first process only)."""
        if jax.process_index() == 0:
            print(line, flush=True)
        self.summary.append(line)

    def record(self, section: str, value: Any) -> None:
        """Stores a stage's results section; the first process rewrites results.json atomically."""
        self.results[section] = value
        if jax.process_index() == 0:
            atomic.write_json(self.results_path, self.results)

    def forget(self, section: str) -> None:
        """Drops a section an earlier run left in results.json (one this run does not make)."""
        if section in self.results:
            del self.results[section]
            if jax.process_index() == 0:
                atomic.write_json(self.results_path, self.results)


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e}); delete it or choose another workdir") from e
