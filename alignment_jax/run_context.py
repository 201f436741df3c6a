"""What the stages of one run share: the config, the workdir, inputs loaded once, results so far."""

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from alignment_jax import atomic, provenance, workdir
from alignment_jax.data.features import load_features
from alignment_jax.data.triplets import ThingsData, TripletSet, load_things
from alignment_jax.errors import InputError
from alignment_jax.probing.transform import Transform, given_transform_path
from alignment_jax.stages import ORDER

PROVENANCE = "provenance"  # results.json: {section: {fact: value}}, what each section was computed from


class RunContext:
    """Lazily loaded inputs of a run and the results.json it writes.

    features: THINGS features (n_objects, p), from `config.features` or from the extract stage
      (which sets `features_path`); their rows must match the THINGS objects.
    things: the THINGS triplets (train/test/object ids).
    transform: the learned transform in `workdir/transform.npz`, once the probe stage wrote it, or the
      given one (`config.transform`).
    facts: the provenance facts of the stage running now; `record` files every section under them.
    With model.layers (set by the extract stage): `layer`, the main layer (model.layer), and `layer_paths`,
    {layer: features file} of every layer in network order (`layers`), read by `layer_features(layer)`; each
    layer's transform is `layer_transform_path(layer)`.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir_path: str):
        self.config = config
        self.workdir = workdir_path
        workdir.prepare(workdir_path)
        self.results_path = os.path.join(workdir_path, "results.json")
        self.results, self.unreadable_results = _read_results(self.results_path)
        self.features_path: str = config.features
        self.summary: list[str] = []
        self.facts: dict[str, Any] | None = None
        self.trains_transform = False  # the probe stage runs now (set by alignment_jax.probe.run)
        self.pending: dict[str, dict[str, Any]] = {}  # facts of sections this run will write, before it does
        self._features: np.ndarray | None = None
        self._things: ThingsData | None = None
        self._digests: dict[str, str] = {}
        self._model_runner = None
        self.layer = ""
        self.layer_paths: dict[str, str] = {}
        self.layer_rows: list[dict[str, Any]] = []  # the extract stage's part of results.json `layers`
        self._layer_features: dict[str, np.ndarray] = {}
        # inputs a stage reads once and keeps for the later stages of this run ({name: value}: AligNet's
        # triplets and features, the teacher's image set and features, the Levels triplets)
        self.memo: dict[str, Any] = {}

    @property
    def things(self) -> ThingsData:
        if self._things is None:
            things = self.config.things
            loaded = load_things(things.root, things.train, things.test, things.objects, one_based=things.one_based)
            if self._features is not None or self.features_path:
                loaded = match_objects(loaded, self.features, self.features_path)
            self._things = loaded
        return self._things

    @property
    def features(self) -> np.ndarray:
        if self._features is None:
            if not self.features_path:
                raise InputError(
                    "no features: set features=X.npy (n_objects x p) or a model and images to extract them"
                )
            features = load_features(self.features_path)
            if self._things is not None:
                self._things = match_objects(self._things, features, self.features_path)
            self._features = features
        return self._features

    @property
    def things_loaded(self) -> bool:
        return self._things is not None

    @property
    def features_known(self) -> bool:
        """Whether the features can be read now (a file is given, or the extract stage has made them)."""
        return self._features is not None or bool(self.features_path)

    def digest(self, what: str) -> str:
        """The provenance digest of the loaded `features`, `things` or every layer's features (`layers`,
        with model.layers), computed once."""
        if what not in self._digests:
            if what == "features":
                self._digests[what] = provenance.array_digest(self.features)
            elif what == "layers":
                arrays = {layer: provenance.array_digest(self.layer_features(layer)) for layer in self.layers}
                self._digests[what] = provenance.digest(arrays)
            else:
                things = self.things
                test = things.test.triplets if things.test is not None else None
                ids = list(things.object_ids) if things.object_ids is not None else None
                self._digests[what] = provenance.digest([provenance.array_digest(things.train.triplets, test), ids])
        return self._digests[what]

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
        """workdir/transform.npz, or the given transform (`config.transform`) that replaces the probe."""
        if self.config.transform:
            return given_transform_path(
                self.config.transform, self.config.transform_model, self.config.transform_module
            )
        return os.path.join(self.workdir, "transform.npz")

    @property
    def transform(self) -> Transform | None:
        return Transform.load_npz(self.transform_path) if os.path.exists(self.transform_path) else None

    @property
    def model_runner(self):
        """config.model, loaded on first use and kept for this run (extract/pipeline.ModelRunner)."""
        if self._model_runner is None:
            from alignment_jax.extract.pipeline import ModelRunner

            self._model_runner = ModelRunner(self.config)
        return self._model_runner

    @property
    def earlier_transform(self) -> Transform | None:
        """The transform.npz an earlier run left, when this run trains none (a stage's input to check before
        anything slow runs); None when the probe runs now or there is none."""
        return None if self.trains_transform else self.transform

    def section_facts(self, name: str) -> dict[str, Any] | None:
        """The provenance of section `name`: this run's when it will write it, else results.json's."""
        if name in self.pending:
            return self.pending[name]
        return self.results.get(PROVENANCE, {}).get(name)

    def sections(self) -> list[str]:
        """The sections results.json will hold: those it has with provenance and those this run writes."""
        return list(dict.fromkeys([*self.results.get(PROVENANCE, {}), *self.pending]))

    def transform_source(self) -> str | None:
        """What the transform that later stages apply comes from: the probe section's provenance digest when
        results.json has one, else the file's own digest (a transform.npz put there by hand), else None."""
        probe = self.section_facts("probe")
        if probe is not None:
            return "probe:" + section_digest(probe)
        return provenance.file_digest(self.transform_path) if os.path.isfile(self.transform_path) else None

    def log(self, line: str) -> None:
        """A line of the readable summary (printed by the first process only)."""
        if jax.process_index() == 0:
            print(line, flush=True)
        self.summary.append(line)

    def record(self, section: str, value: Any, facts: dict[str, Any] | None = None) -> None:
        """Stores a stage's results section, with what it was computed from (`facts`, default: those of the
        stage running now); the first process rewrites results.json atomically."""
        self.results[section] = value
        facts = self.facts if facts is None else facts
        if facts is not None:
            self.results.setdefault(PROVENANCE, {})[section] = provenance.normalized(facts)
        self.write()

    def reload(self) -> None:
        """Reads results.json again (another run may have written it before this one took the lock)."""
        self.results, self.unreadable_results = _read_results(self.results_path)

    def write(self) -> None:
        """Writes results.json (sections in stage order, provenance last)."""
        self.results = _ordered(self.results)
        if jax.process_index() == 0:
            atomic.write_json(self.results_path, self.results)


def section_digest(facts: dict[str, Any]) -> str:
    """The digest of a section's provenance, without the digests of the files it wrote (`output:` facts)."""
    return provenance.digest({k: v for k, v in facts.items() if not k.startswith("output:")})


def match_objects(things: ThingsData, features: np.ndarray, source: str) -> ThingsData:
    """The THINGS data with one object per feature row; errors name the features file `source`.

    With an object list, the rows must be its objects; without one, the rows must cover every index of the
    triplets (more rows are more objects, which no triplet names).
    """
    rows = features.shape[0]
    if things.object_ids is not None and rows != len(things.object_ids):
        raise InputError(
            f"{source}: {rows} feature rows but the THINGS object list has {len(things.object_ids)} objects "
            "(things.objects or things_concepts.tsv); row i must be object i"
        )
    if rows < things.n_objects:
        raise InputError(
            f"{source}: {rows} feature rows but the triplets ({things.train.source}) name objects up to index "
            f"{things.n_objects - 1}; row i must be object i"
        )
    if rows == things.n_objects:
        return things
    test = TripletSet(things.test.triplets, rows, things.test.source) if things.test is not None else None
    return ThingsData(TripletSet(things.train.triplets, rows, things.train.source), test, things.object_ids, rows)


def _ordered(results: dict[str, Any]) -> dict[str, Any]:
    position = {name: i for i, name in enumerate(ORDER)}
    names = sorted(results, key=lambda k: (k == PROVENANCE, position.get(k, len(ORDER))))
    return {k: results[k] for k in names}


def _read_results(path: str) -> tuple[dict[str, Any], str]:
    """The results.json at `path` ({} when there is none) and, when it cannot be used, why."""
    if not os.path.exists(path):
        return {}, ""
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return {}, f"results.json is not valid JSON ({e})"
    if not isinstance(results, dict):
        return {}, "results.json does not hold a JSON object"
    return results, ""
