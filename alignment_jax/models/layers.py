"""Which named outputs of a ViT a run extracts (`model.layers`), in network order, and how deep each one is.

Models that are no ViT (BiT ResNets, SavedModels) name their outputs themselves: an `Outputs` (their names in
network order and the ones `model.layers=all` means, e.g. BiT's stages) takes the place of `depth` in every
function here, and the same rules apply with those "blocks".

The named outputs (models/vit.py): `stem`, `with_posemb` before the transformer blocks, `block00` ..
`block{depth-1}`, then `pre_ln`, `encoded`, `head_input`, `pre_logits`, `logits` after them.

Relative depth, the x axis of the depth curves (so models of different depth compare): block i sits at
(i + 1) / depth, outputs before the first block at 0, and the outputs after the last block that a run
extracts follow it at steps of 1 / depth, in network order (pre_logits of a 12-block model alone: 13/12).
"""

import dataclasses
import re

from alignment_jax.errors import InputError

BEFORE_BLOCKS = ("stem", "with_posemb")
AFTER_BLOCKS = ("pre_ln", "encoded", "head_input", "pre_logits", "logits")
_BLOCK = re.compile(r"block(\d+)")


@dataclasses.dataclass(frozen=True)
class Outputs:
    """A model's named outputs in network order (`names`) and its "blocks", what model.layers=all extracts."""

    names: tuple[str, ...]
    blocks: tuple[str, ...]


Depth = int | Outputs  # a ViT's number of blocks, or another model's outputs


def block_name(index: int) -> str:
    return f"block{index:02d}"


def _n_blocks(depth: Depth) -> int:
    return len(depth.blocks) if isinstance(depth, Outputs) else depth


def _position(layer: str, depth: Depth) -> float | None:
    """Sort key in network order; None for a name that is no output of a ViT of this depth."""
    if isinstance(depth, Outputs):
        if layer not in depth.names:
            return None
        return depth.names.index(layer) - (depth.names.index(depth.blocks[0]) if depth.blocks else 0)
    match = _BLOCK.fullmatch(layer)
    if match:
        index = int(match.group(1))
        return index if index < depth and layer == block_name(index) else None
    if layer in BEFORE_BLOCKS:
        return BEFORE_BLOCKS.index(layer) - len(BEFORE_BLOCKS)
    if layer in AFTER_BLOCKS:
        return depth + AFTER_BLOCKS.index(layer)
    return None


def in_network_order(layers, depth: Depth) -> list[str]:
    """The layers sorted as the network computes them (names it does not know last, in their order)."""
    position = lambda name: _position(name, depth)
    last = len(depth.names) if isinstance(depth, Outputs) else depth + len(AFTER_BLOCKS)
    return sorted(layers, key=lambda name: last if position(name) is None else position(name))


def resolve_layers(spec: str, depth: Depth, default: str) -> tuple[str, ...]:
    """model.layers -> the layers to extract, in network order; `default` (model.layer) is always among them.

    spec: "" = the default alone; "all" = every transformer block and the default; else a comma list of
    output names (block03,block07,pre_logits)."""
    spec = spec.strip()
    if not spec:
        return (default,)
    every = list(depth.blocks) if isinstance(depth, Outputs) else [block_name(i) for i in range(depth)]
    names = every if spec == "all" else [s.strip() for s in spec.split(",")]
    if any(not name for name in names):
        raise InputError(f"model.layers={spec!r}: an empty name; write all or names like block03,block07,pre_logits")
    unknown = [name for name in names if _position(name, depth) is None]
    if unknown and isinstance(depth, Outputs):
        raise InputError(f"model.layers: {unknown[0]!r} is not an output of this model ({', '.join(depth.names)})")
    if unknown:
        known = ", ".join([*BEFORE_BLOCKS, f"{block_name(0)}..{block_name(depth - 1)}", *AFTER_BLOCKS])
        raise InputError(f"model.layers: {unknown[0]!r} is not an output of this {depth}-block model ({known})")
    return tuple(in_network_order(dict.fromkeys([*names, default]), depth))


def relative_depths(layers: tuple[str, ...] | list[str], depth: Depth) -> dict[str, float]:
    """{layer: relative depth} for layers of a `depth`-block ViT (see the module docstring)."""
    out, after, n_blocks = {}, 0, _n_blocks(depth)
    for layer in in_network_order(layers, depth):
        position = _position(layer, depth)
        if position is not None and position < 0:
            out[layer] = 0.0
        elif position is not None and position < n_blocks:
            out[layer] = (position + 1) / n_blocks
        else:
            after += 1
            out[layer] = 1.0 + after / max(n_blocks, 1)
    return {layer: out[layer] for layer in layers}


def select_layers(spec: str, available: list[str], field: str) -> list[str]:
    """A stage's subset of the run's layers: "" = none, "all" = every one, else a comma list of some of them."""
    spec = spec.strip()
    if not spec:
        return []
    if spec == "all":
        return list(available)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    missing = [name for name in names if name not in available]
    if missing:
        listed = ", ".join(available) or "none: set model.layers"
        raise InputError(f"{field}: {missing[0]!r} is not among the run's layers ({listed})")
    return [name for name in available if name in names]
