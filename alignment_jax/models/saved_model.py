"""TensorFlow SavedModels as a model source: AligNet's released models, or any SavedModel with their signature.

The signature (google-deepmind/alignet's README): `serving_default(images: float32 (B, H, W, 3))` -> a dict
of outputs, for AligNet `pre_logits` (B, H), `triplet_logits` (B, 1024), `i1k_logits` (B, 1000) and
`layer_{N}` (B, tokens, H) after each transformer layer. Every output is a layer here: (B, p) ones as they
are, (B, tokens, p) ones pool like a ViT's tokens (images.token_pooling), with a class token counted only
where the tokens are a square grid plus one (AligNet's 196 = 14 x 14 tokens have none: they pool by mean).

`model.checkpoint` is the SavedModel folder or its `.tar.gz` (local or remote: unpacked once, atomically, into
a folder beside the cached file). The model runs in TensorFlow on the host: the jitted extraction step calls
it through `jax.pure_callback`, so the feature store, resume and atomic shards are those of every other
model. TensorFlow is the optional extra `tensorflow` (pip install 'alignment_jax[tensorflow]').
"""

import os
import re
import tarfile
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from alignment_jax import atomic
from alignment_jax.errors import InputError
from alignment_jax.models import storage
from alignment_jax.models.checkpoints import grid_rows
from alignment_jax.models.layers import Outputs

SIGNATURE = "serving_default"
INPUT = "images"
HEADS = ("pre_logits", "triplet_logits", "i1k_logits")  # after the layers, in this order
_LAYER = re.compile(r"layer_(\d+)")


def import_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as e:
        raise InputError(
            "model: running a TensorFlow SavedModel needs TensorFlow: pip install 'alignment_jax[tensorflow]' "
            "(the optional extra `tensorflow`, i.e. tensorflow-cpu)"
        ) from e
    return tf


def local_folder(path: str, cache_dir: str | None = None) -> str:
    """The SavedModel folder for `path`: a folder as it is, a `.tar.gz` (cached if remote) unpacked once
    beside itself into `<file>.d/`; the folder holding `saved_model.pb` inside it."""
    local = storage.fetch(path, cache_dir)
    if os.path.isdir(local):
        return _find_saved_model(local, path)
    if not local.endswith((".tar.gz", ".tgz")):
        raise InputError(f"{path}: a SavedModel is a folder with saved_model.pb or its .tar.gz; got another file")
    target = local + ".d"
    if not os.path.isdir(target):
        try:
            with tarfile.open(local, "r:gz") as tar, atomic.atomic_directory(target) as tmp:
                _check_members(tar, path)
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
                tar.extractall(tmp, **safe)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InputError(f"{path}: not a readable .tar.gz ({e}); it may be truncated: download it again") from e
    return _find_saved_model(target, path)


def _check_members(tar: tarfile.TarFile, source: str) -> None:
    """Refuses archives whose members would land outside the target folder, or are links or devices."""
    for member in tar.getmembers():
        name = os.path.normpath(member.name)
        if name.startswith(("..", "/")) or not (member.isfile() or member.isdir()):
            raise InputError(f"{source}: archive member {member.name!r} is not a plain file inside the archive")


def _find_saved_model(folder: str, source: str) -> str:
    for root, _, files in sorted(os.walk(folder)):
        if "saved_model.pb" in files:
            return root
    raise InputError(f"{source}: no saved_model.pb inside; not a TensorFlow SavedModel")


def layer_names(names: list[str]) -> list[str]:
    """Output names in network order: layer_0, layer_1, ... (numerically), then the heads, then the rest."""
    layers = sorted((n for n in names if _LAYER.fullmatch(n)), key=lambda n: int(n.split("_")[1]))
    return layers + [n for n in HEADS if n in names] + sorted(n for n in names if n not in layers and n not in HEADS)


class SavedModelModule:
    """A SavedModel's `serving_default` with the interface of our Flax models: `apply(variables, images)` ->
    (None, {output name: array}); images float32 (B, S, S, 3) as the model's preprocessing makes them.

    Runs TensorFlow on the host through `jax.pure_callback` (inside jit too). `shapes`: {name: shape of one
    image's output}, found by running one image at load time.
    """

    def __init__(self, folder: str, image_size: int, source: str):
        tf = import_tensorflow()
        try:
            loaded = tf.saved_model.load(folder)
        except Exception as e:  # TensorFlow raises many kinds on a damaged model
            raise InputError(f"{source}: TensorFlow cannot load this SavedModel ({type(e).__name__}: {e})") from e
        signatures = getattr(loaded, "signatures", {})
        if SIGNATURE not in signatures:
            raise InputError(f"{source}: no '{SIGNATURE}' signature (found {sorted(signatures)})")
        self._loaded = loaded  # keeps the variables alive
        self._fn = signatures[SIGNATURE]
        _, inputs = self._fn.structured_input_signature
        if set(inputs) != {INPUT}:
            raise InputError(
                f"{source}: '{SIGNATURE}' takes {sorted(inputs)}; expected one input '{INPUT}' (B, H, W, 3)"
            )
        self._tf = tf
        self.image_size = image_size
        probe = self._run(np.zeros((1, image_size, image_size, 3), np.float32))
        self.names = layer_names(list(probe))
        self.shapes = {name: tuple(probe[name].shape[1:]) for name in self.names}
        self.depth = len([n for n in self.names if _LAYER.fullmatch(n)])

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = self._fn(**{INPUT: self._tf.constant(np.asarray(images, np.float32))})
        return {name: np.asarray(value, np.float32) for name, value in out.items()}

    def _host(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self._run(images)
        return tuple(out[name] for name in self.names)

    def apply(self, variables: Any, images: jax.Array) -> tuple[None, dict[str, jax.Array]]:
        del variables  # the weights live in the SavedModel
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images: expected shape (batch, height, width, 3), got {tuple(images.shape)}")
        b = images.shape[0]
        shapes = tuple(jax.ShapeDtypeStruct((b, *self.shapes[n]), jnp.float32) for n in self.names)
        values = jax.pure_callback(self._host, shapes, images.astype(jnp.float32), vmap_method="sequential")
        return None, dict(zip(self.names, values, strict=True))

    def outputs(self) -> Outputs:
        return Outputs(tuple(self.names), tuple(n for n in self.names if _LAYER.fullmatch(n)))

    def prefix_tokens(self, layer: str) -> int:
        """1 where a token layer's count is a square grid plus one (a class token first), else 0."""
        shape = self.shapes.get(layer, ())
        if len(shape) != 2:
            return 0
        _, has_class = grid_rows(shape[0])
        return int(has_class)

    def bytes_per_image(self, image_size: int) -> float:
        """Host-side: the outputs of one image, twice, plus its pixels (TensorFlow's own memory is its own)."""
        outputs = sum(4.0 * int(np.prod(s)) for s in self.shapes.values())
        return 2.0 * (outputs + 5.0 * image_size * image_size * 3)


def write_saved_model(path: str, image_size: int = 224, width: int = 32, depth: int = 2, seed: int = 0) -> None:
    """A small SavedModel with AligNet's signature, for stand-ins and tests: patches of 16 (or the image side
    if smaller) -> `depth` residual token layers `layer_i` (B, g*g, width) -> pre_logits (token mean) ->
    triplet_logits (B, 1024), i1k_logits (B, 1000). Written as a folder, or as a `.tar.gz` of one folder
    (AligNet's release) when `path` ends so; atomically either way."""
    tf = import_tensorflow()
    patch = min(16, image_size)
    grid = image_size // patch
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> Any:
        return tf.Variable((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32))

    module = tf.Module()
    module.embed = weight(patch * patch * 3, width)
    module.mix = [weight(width, width) for _ in range(depth)]
    module.triplet, module.i1k = weight(width, 1024), weight(width, 1000)

    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32)])
    def serve(images: Any) -> dict[str, Any]:
        patches = tf.image.extract_patches(images, [1, patch, patch, 1], [1, patch, patch, 1], [1, 1, 1, 1], "VALID")
        x = tf.reshape(patches, (-1, grid * grid, patch * patch * 3)) @ module.embed
        out = {}
        for i, w in enumerate(module.mix):
            x = x + tf.nn.gelu(x @ w)
            out[f"layer_{i}"] = x
        pre = tf.reduce_mean(x, axis=1)
        return {**out, "pre_logits": pre, "triplet_logits": pre @ module.triplet, "i1k_logits": pre @ module.i1k}

    if not path.endswith((".tar.gz", ".tgz")):
        with atomic.atomic_directory(path) as tmp:
            tf.saved_model.save(module, tmp, signatures={SIGNATURE: serve})
        return
    name = os.path.basename(path).removesuffix(".tgz").removesuffix(".tar.gz")
    with tempfile.TemporaryDirectory(prefix="alignment_jax_saved_model_") as folder:
        tf.saved_model.save(module, os.path.join(folder, name), signatures={SIGNATURE: serve})
        with atomic.atomic_path(path, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
            tar.add(os.path.join(folder, name), arcname=name)
