"""The forward pass, compiled once: the batch sharded over every device, the parameters replicated.

On several hosts (after `jax.distributed.initialize()`) the same code runs in every process: each
process feeds its own rows of a global batch and gets the features of the whole batch back.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from alignment_jax.errors import InputError

POOLINGS = ("cls", "mean")

ApplyFn = Callable[[Any, jax.Array], dict[str, jax.Array]]


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh ('data',) over `devices` (default: every device of every process).

    Axis type Auto: model code carries no sharding annotations; the compiler propagates the batch split."""
    devices = devices if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def pool_tokens(x: jax.Array, pooling: str, n_prefix_tokens: int) -> jax.Array:
    """(B, p) features from a layer output: (B, p) as it is; tokens (B, T, p) -> the class token
    (cls: token 0) or the mean of the patch tokens (mean: tokens n_prefix_tokens..T-1)."""
    if x.ndim == 2:
        return x
    if x.ndim != 3:
        raise InputError(f"layer output has shape {x.shape}; expected (batch, p) or tokens (batch, tokens, p)")
    if pooling == "cls":
        if n_prefix_tokens < 1:
            raise InputError("images.token_pooling=cls but the model has no class token; use token_pooling=mean")
        return x[:, 0]
    if pooling == "mean":
        return x[:, n_prefix_tokens:].mean(axis=1)
    raise InputError(f"images.token_pooling: {pooling!r} is not one of {POOLINGS}")


class Extractor:
    """features (B, P) float32 = pool(apply_fn(params, preprocess(images))[layer]) of each of `layers`, side
    by side (P = the sum of their widths `dims`; `split` parts them), for global batches of `batch_size`
    images (B, H, W, C) sharded over the mesh axis 'data': one forward pass gives every layer.

    batch_size is rounded up to a multiple of the device count. Each process passes the rows
    `local_rows` of a global batch (padding included) and receives all B rows. The compute dtype
    (e.g. bfloat16 matmuls) is the model's own setting; features come back as float32. pooling and
    n_prefix_tokens (class tokens before the patch tokens) are one value for every layer or one per layer.
    """

    def __init__(
        self,
        apply_fn: ApplyFn,
        params: Any,
        layers: str | Sequence[str],
        *,
        image_shape: tuple[int, ...],
        preprocess: Callable[[jax.Array], jax.Array],
        batch_size: int,
        pooling: str | Mapping[str, str] = "cls",
        n_prefix_tokens: int | Mapping[str, int] = 1,
        mesh: Mesh | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"images.batch_size must be >= 1, got {batch_size}")
        self.mesh = mesh if mesh is not None else data_mesh()
        n_devices = self.mesh.devices.size
        self.batch_size = -(-batch_size // n_devices) * n_devices
        self.image_shape = tuple(image_shape)
        self.layers = (layers,) if isinstance(layers, str) else tuple(layers)
        self.pooling = {name: pooling if isinstance(pooling, str) else pooling[name] for name in self.layers}
        prefix = {
            name: n_prefix_tokens if isinstance(n_prefix_tokens, int) else n_prefix_tokens[name] for name in self.layers
        }
        field = "model.layer" if len(self.layers) == 1 else "model.layers"

        def layer_outputs(params: Any, images: jax.Array) -> tuple[jax.Array, ...]:
            outputs = apply_fn(params, preprocess(images))
            for layer in self.layers:
                if layer not in outputs:
                    raise InputError(f"{field}: {layer!r} is not an output of the model (outputs: {sorted(outputs)})")
            return tuple(outputs[layer] for layer in self.layers)

        def pooled(raw: tuple[jax.Array, ...]) -> list[jax.Array]:
            return [pool_tokens(x, self.pooling[name], prefix[name]) for name, x in zip(self.layers, raw, strict=True)]

        def forward(params: Any, images: jax.Array) -> jax.Array:
            parts = pooled(tuple(x.astype(jnp.float32) for x in layer_outputs(params, images)))
            return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)

        example = jax.ShapeDtypeStruct((n_devices, *self.image_shape), jnp.uint8)
        raw = jax.eval_shape(layer_outputs, params, example)
        self.token_layers = {name: len(x.shape) == 3 for name, x in zip(self.layers, raw, strict=True)}
        self.tokens = self.token_layers[self.layers[0]]  # whether pooling applies (to the first layer)
        widths = [int(x.shape[-1]) for x in jax.eval_shape(pooled, raw)]
        self.dims = dict(zip(self.layers, widths, strict=True))
        self.dim = sum(widths)

        replicated = NamedSharding(self.mesh, P())
        self._data = NamedSharding(self.mesh, P("data"))
        self.params = jax.tree.map(lambda a: _replicate(np.asarray(a), replicated), params)
        self._forward = jax.jit(forward, in_shardings=(replicated, self._data), out_shardings=replicated)
        indices = self._data.addressable_devices_indices_map((self.batch_size,)).values()
        rows = [index[0].indices(self.batch_size)[:2] for index in indices]  # (start, stop) per local device
        start, stop = min(r[0] for r in rows), max(r[1] for r in rows)
        if sum(b - a for a, b in rows) != stop - start:
            raise RuntimeError(f"this process's devices hold non-contiguous batch rows {rows}")
        self.local_rows = slice(start, stop)

    def split(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """(n, P) features of all layers -> {layer: (n, p_layer)} (views, no copies)."""
        edges = np.cumsum([0, *self.dims.values()])
        return {name: features[:, a:b] for name, a, b in zip(self.layers, edges[:-1], edges[1:], strict=True)}

    def __call__(self, local_images: np.ndarray) -> jax.Array:
        """local_images: (local_rows, H, W, C) uint8, this process's rows of one global batch.
        Returns (batch_size, p) float32, replicated on every device; dispatch is asynchronous."""
        images = jax.make_array_from_process_local_data(self._data, local_images, (self.batch_size, *self.image_shape))
        return self._forward(self.params, images)


def _replicate(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A copy of the host array on every device of every process."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def fetch(features: jax.Array) -> np.ndarray:
    """The host copy of a replicated (B, p) result (waits for it)."""
    return np.asarray(features.addressable_data(0))
