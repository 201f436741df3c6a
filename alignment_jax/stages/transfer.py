"""Stage `transfer`: alignment with human datasets other than THINGS, with and without the learned transform.

For every RSA dataset in `transfer.datasets` and every kernel in `transfer.kernels`: Spearman and Pearson
correlation of the model RSM with the human matrix over the upper triangle, on the original features and
on the features mapped by `workdir/transform.npz` (standardized with the THINGS mean/std stored in it,
then W, + b). Triplet datasets get zero-shot odd-one-out accuracy before and after the transform, in the
section `transfer_triplets`.

Features per dataset (row i = stimulus i): a `NAME:FILE` entry of `transfer.features`, else NAME.npy or
NAME.h5 in a folder listed there, else extracted from the dataset's images with `config.model`.
"""

import os

import ml_collections
import numpy as np

from alignment_jax import provenance as facts
from alignment_jax.config import checks
from alignment_jax.data.features import load_features
from alignment_jax.data.rsm_datasets import RSMDataset, TripletDataset, load_datasets, parse_datasets
from alignment_jax.errors import InputError
from alignment_jax.evaluation import rsa
from alignment_jax.evaluation.zero_shot import odd_one_out
from alignment_jax.models.layers import select_layers
from alignment_jax.probing.transform import Transform
from alignment_jax.run_context import RunContext
from alignment_jax.stages import StageResult, extract, layers

READS = (
    "earlier_transform", "layer_transform_path", "layers", "model_runner", "results", "transform", "transform_path",
    "transform_source", "workdir", *layers.READS
)  # fmt: skip
SETTINGS = (
    "transfer", "similarity", "seed", "zero_shot.bootstrap", "model", "images", "progress", *layers.SETTINGS,
    *extract.SETTINGS
)  # fmt: skip


def has_inputs(config: ml_collections.ConfigDict) -> bool:
    return bool(config.transfer.datasets)


MEMORY = "transfer.bootstrap, or images.batch_size (the datasets' images are extracted in batches)"


def check(config: ml_collections.ConfigDict) -> None:
    if not config.transfer.datasets:
        raise InputError("transfer.datasets is empty: name the datasets to transfer to (KIND:PATH,...)")
    kernels(config)
    checks.integer(config, "transfer.bootstrap", minimum=0)
    checks.integer(config, "zero_shot.bootstrap", minimum=0)  # the triplet datasets' intervals
    parse_datasets(config.transfer.datasets)
    if config.model.name or config.model.variant:  # features of datasets without a file are extracted
        extract.check(config)


def check_inputs(ctx: RunContext) -> None:
    """Every dataset loads, every features file fits its dataset, and a transform made before this run (the
    probe stage does not run now) is readable and of the features' width."""
    settings = ctx.config.transfer
    datasets = load_datasets(settings.datasets)
    files, folders = parse_feature_sources(settings.features, [d.name for d in datasets])
    transform = ctx.earlier_transform
    for dataset in datasets:
        found = _feature_file(dataset, files, folders)
        if found:
            features = _read_dataset_features(dataset, found)
            _apply(transform, features, dataset.name, ctx.transform_path)
        elif not (ctx.config.model.name or ctx.config.model.variant) or not dataset.stimuli:
            dataset_features(ctx, dataset, files, folders)  # raises: says where features could come from


def provenance(ctx: RunContext) -> dict:
    settings = ctx.config.transfer
    paths = [path for _, path in parse_datasets(settings.datasets)]
    paths += [item.partition(":")[2] or item for item in (p.strip() for p in settings.features.split(",")) if item]
    found = {
        **facts.settings(ctx.config, "transfer", "similarity", "seed", "zero_shot.bootstrap"),
        "files:transfer": facts.files_fingerprint(paths),
        "transform": ctx.transform_source(),
        **layers.provenance(ctx),
    }
    if ctx.config.model.name or ctx.config.model.variant:
        found.update(facts.settings(ctx.config, "model", "images.resize", "images.jpeg_draft", "images.token_pooling"))
        found.pop("config:model.cache_dir")  # where checkpoints are kept, not what they are
    return found


def kernels(config: ml_collections.ConfigDict) -> list[str]:
    """The RSM kernels of `transfer.kernels`."""
    names = [rsa.check_kernel(k.strip()) for k in config.transfer.kernels.split(",") if k.strip()]
    if not names:
        raise InputError(f"transfer.kernels: no kernel in {config.transfer.kernels!r}; use cosine, pearson or both")
    return names


def run(ctx: RunContext) -> list[dict]:
    """Returns the `transfer` section: [{"dataset", "kernel", "spearman", "pearson", "spearman_transformed",
    "pearson_transformed", "n_stimuli"}] (+ "<metric>_ci95" with transfer.bootstrap > 0). With
    transfer.layers, the same rows per layer go into that layer's entry of results.json `layers`."""
    settings = ctx.config.transfer
    chosen_kernels = kernels(ctx.config)
    datasets = load_datasets(settings.datasets)
    files, folders = parse_feature_sources(settings.features, [d.name for d in datasets])
    chosen = select_layers(settings.layers, ctx.layers, "transfer.layers")
    by_layer = {d.name: layer_dataset_features(ctx, d, files, folders, chosen) for d in datasets} if chosen else {}
    transform = ctx.transform
    if transform is None:
        ctx.log(f"transfer: no {ctx.transform_path} (run the probe stage first); transformed columns are empty")
    rsa_rows, triplet_rows = [], []
    for dataset in datasets:
        features = dataset_features(ctx, dataset, files, folders)
        transformed = _apply(transform, features, dataset.name, ctx.transform_path)
        if isinstance(dataset, RSMDataset):
            rsa_rows += rsa_rows_for(
                dataset, features, transformed, chosen_kernels, settings.bootstrap, ctx.config.seed
            )
        else:
            triplet_rows.append(_triplet_row(dataset, features, transformed, ctx.config))
    more = {"transfer_triplets": triplet_rows} if triplet_rows or "transfer_triplets" in ctx.results else {}
    _log_summary(ctx, rsa_rows, triplet_rows)
    if chosen:
        more["layers"] = _layer_entries(ctx, datasets, by_layer, chosen, chosen_kernels)
    return StageResult(rsa_rows, more) if more else rsa_rows


def layer_dataset_features(
    ctx: RunContext, dataset: RSMDataset | TripletDataset, files: dict[str, str], folders: list[str], chosen: list[str]
) -> dict[str, np.ndarray]:
    """{layer: (n, p) features} of the dataset's stimuli for every chosen layer (and model.layer, whose store
    the main extraction then reuses), from one pass of config.model over its images."""
    in_folders = [os.path.join(f, dataset.name + ext) for f in folders for ext in (".npy", ".h5")]
    if dataset.name in files or any(os.path.isfile(p) for p in in_folders):
        raise InputError(
            f"transfer.layers: {dataset.name} has precomputed features (transfer.features), of one layer; per-layer "
            "transfer extracts every layer from the dataset's images with config.model (leave transfer.features empty)"
        )
    if not dataset.stimuli:
        raise InputError(f"transfer.layers: {dataset.name} has no images to extract its layers from")
    from alignment_jax.extract.pipeline import layer_features_for_images

    spec = ",".join(chosen)
    extracted = layer_features_for_images(
        ctx.config, list(dataset.stimuli), dataset.name, ctx.workdir, spec, ctx.model_runner
    )
    return {layer: np.asarray(extracted[layer], np.float32) for layer in chosen}


def _layer_entries(
    ctx: RunContext, datasets: list, by_layer: dict[str, dict[str, np.ndarray]], chosen: list[str], kernels: list[str]
) -> list[dict]:
    """results.json `layers` with the transfer rows of every chosen layer (its own transform,
    DIR/transforms/<layer>/transform.npz)."""
    settings = ctx.config.transfer
    layers.require_transforms(ctx, chosen, "transfer.layers")
    rsa_rows: dict[str, list[dict]] = {layer: [] for layer in chosen}
    triplet_rows: dict[str, list[dict]] = {layer: [] for layer in chosen}
    for layer in chosen:
        transform = layers.layer_transform(ctx, layer)
        for dataset in datasets:
            features = by_layer[dataset.name][layer]
            transformed = _apply(transform, features, dataset.name, ctx.layer_transform_path(layer))
            if isinstance(dataset, RSMDataset):
                rsa_rows[layer] += rsa_rows_for(
                    dataset, features, transformed, kernels, settings.bootstrap, ctx.config.seed
                )
            else:
                triplet_rows[layer].append(_triplet_row(dataset, features, transformed, ctx.config))
    entries = layers.update(ctx, "transfer", rsa_rows)
    if any(triplet_rows.values()):
        entries = layers.update(ctx, "transfer_triplets", triplet_rows, entries)
    for i, row in enumerate(rsa_rows[chosen[0]]):  # the same datasets and kernels, in order, for every layer
        pairs = [
            f"{layer} {_fmt(rows[i]['spearman'])} -> {_fmt(rows[i]['spearman_transformed'])}"
            for layer, rows in rsa_rows.items()
        ]
        ctx.log(f"transfer {row['dataset']} ({row['kernel']}) per layer, Spearman -> transformed: {', '.join(pairs)}")
    return entries


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def rsa_rows_for(
    dataset: RSMDataset,
    features: np.ndarray,
    transformed: np.ndarray | None,
    kernels: list[str],
    bootstrap: int = 0,
    seed: int = 0,
) -> list[dict]:
    """One row per kernel: RSA of features (n, p), and of transformed features (n, p) when given."""
    human = dataset.similarity
    rows = []
    for kernel in kernels:
        row: dict = {"dataset": dataset.name, "kernel": kernel}
        for suffix, x in (("", features), ("_transformed", transformed)):
            if x is None:
                row.update({f"spearman{suffix}": None, f"pearson{suffix}": None})
                continue
            model = rsa.model_rsm(x, kernel)
            for metric, value in rsa.correlate_rsms(model, human).items():
                row[f"{metric}{suffix}"] = None if np.isnan(value) else value  # nan: a constant RSM
            if bootstrap > 0:
                for metric, ci in rsa.bootstrap_ci(model, human, bootstrap, seed).items():
                    row[f"{metric}{suffix}_ci95"] = [None if np.isnan(v) else v for v in ci]  # results.json: no NaN
        row["n_stimuli"] = dataset.n_stimuli
        rows.append(row)
    return rows


def parse_feature_sources(spec: str, dataset_names: list[str]) -> tuple[dict[str, str], list[str]]:
    """`transfer.features` -> ({dataset name: file}, [folders]); every name must be a dataset's."""
    files, folders = {}, []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, path = item.partition(":")
        if not sep:
            if not os.path.isdir(item):
                raise InputError(f"transfer.features: {item}: folder not found (or write NAME:FILE)")
            folders.append(item)
        elif name.strip() not in dataset_names:
            raise InputError(
                f"transfer.features: no dataset named {name.strip()!r}; the datasets are {', '.join(dataset_names)}"
            )
        else:
            files[name.strip()] = path.strip()
    return files, folders


def dataset_features(
    ctx: RunContext, dataset: RSMDataset | TripletDataset, files: dict[str, str], folders: list[str]
) -> np.ndarray:
    """(n, p) features of the dataset's stimuli, from a file, a folder, or extraction with config.model."""
    found = _feature_file(dataset, files, folders)
    if found:
        return _read_dataset_features(dataset, found)
    if ctx.config.model.name or ctx.config.model.variant:
        if not dataset.stimuli:
            raise InputError(
                f"{dataset.name}: no images to extract features from; add the images folder of its layout "
                "or give transfer.features"
            )
        from alignment_jax.extract.pipeline import features_for_images

        features = np.asarray(
            features_for_images(ctx.config, list(dataset.stimuli), dataset.name, ctx.workdir, ctx.model_runner),
            np.float32,
        )
    else:
        raise InputError(
            f"{dataset.name}: no features; give transfer.features={dataset.name}:FILE.npy (or a folder holding "
            f"{dataset.name}.npy), or configure config.model to extract them from the images"
        )
    return _check_rows(dataset, features, dataset.name)


def _feature_file(dataset: RSMDataset | TripletDataset, files: dict[str, str], folders: list[str]) -> str:
    """The features file of `dataset` named in transfer.features, or "" when there is none."""
    if dataset.name in files:
        return files[dataset.name]
    in_folders = [os.path.join(f, dataset.name + ext) for f in folders for ext in (".npy", ".h5")]
    return next((p for p in in_folders if os.path.isfile(p)), "")


def _read_dataset_features(dataset: RSMDataset | TripletDataset, path: str) -> np.ndarray:
    n = dataset.n_stimuli if isinstance(dataset, RSMDataset) else (len(dataset.stimuli) or None)
    return _check_rows(dataset, load_features(path, n_objects=n), path)


def _check_rows(dataset: RSMDataset | TripletDataset, features: np.ndarray, source: str) -> np.ndarray:
    if isinstance(dataset, TripletDataset) and features.shape[0] < dataset.triplets.n_objects:
        raise InputError(
            f"{source}: {features.shape[0]} feature rows but the triplets of {dataset.name} index "
            f"{dataset.triplets.n_objects} objects; row i must be object i"
        )
    return features


def _apply(transform: Transform | None, features: np.ndarray, name: str, path: str) -> np.ndarray | None:
    if transform is None:
        return None
    if features.shape[1] != transform.dim:
        raise InputError(
            f"{name}: features have {features.shape[1]} dimensions but {path} maps {transform.dim}; "
            "use features of the same model and layer as the THINGS features"
        )
    return transform.apply(features)


def _triplet_row(
    dataset: TripletDataset, features: np.ndarray, transformed: np.ndarray | None, config: ml_collections.ConfigDict
) -> dict:
    triplets = dataset.triplets.triplets
    before = odd_one_out(features, triplets, config.similarity, config.zero_shot.bootstrap, config.seed)
    after = None
    if transformed is not None:
        after = odd_one_out(transformed, triplets, config.similarity, config.zero_shot.bootstrap, config.seed)
    return {
        "dataset": dataset.name,
        "similarity": config.similarity,
        "n_triplets": before.n_triplets,
        "accuracy": before.accuracy,
        "ci95": before.summary()["ci95"],
        "accuracy_transformed": after.accuracy if after is not None else None,
        "ci95_transformed": after.summary()["ci95"] if after is not None else None,
    }


def _log_summary(ctx: RunContext, rsa_rows: list[dict], triplet_rows: list[dict]) -> None:
    fmt = lambda value: "-" if value is None else f"{value:.3f}"
    for row in rsa_rows:
        ctx.log(
            f"transfer {row['dataset']} ({row['kernel']}): Spearman {fmt(row['spearman'])} original, "
            f"{fmt(row['spearman_transformed'])} transformed"
        )
    for row in triplet_rows:
        ctx.log(
            f"transfer {row['dataset']}: odd-one-out accuracy {fmt(row['accuracy'])} original, "
            f"{fmt(row['accuracy_transformed'])} transformed"
        )
