"""Reading and writing ViT parameters: big_vision / legacy vit_jax `.npz`, orbax folders, OpenCLIP / timm files.

Pipeline (`registry.load_model` runs it): `read_checkpoint` (raw tree in big_vision names; legacy
names fixed) -> `fit_to_model` (class-token position row folded or added, scan <-> loop layout,
position-embedding grid resampled) -> `match_params` (strict: every missing, unexpected or mis-shaped
name listed in one error, unless named in `dont_load`).

`.npz` keys are '/'-joined; a `params/` or `opt/target/` prefix is dropped; `file.npz:img` picks the
`img/` sub-tree (SigLIP two-tower files); bfloat16 stored as 2-byte void arrays is restored.
"""

import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import ml_dtypes
import numpy as np
import scipy.ndimage

from alignment_jax import atomic
from alignment_jax.errors import InputError
from alignment_jax.models import dinov2, openclip, storage
from alignment_jax.models.vit import VARIANTS, pyloop_to_scan, scan_to_pyloop

Params = dict
TORCH_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def split_subtree(path: str) -> tuple[str, str]:
    """Splits "dir/file.npz:img" into ("dir/file.npz", "img"): a sub-tree follows a ':' in the last path part."""
    head, sep, base = path.rpartition("/")
    if ":" not in base:
        return path, ""
    base, _, subtree = base.rpartition(":")
    return head + sep + base, subtree


def flatten(tree: Params, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a/b/c': leaf}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict[str, Any]) -> Params:
    """{'a/b/c': leaf} -> nested dict."""
    tree: Params = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


class RawCheckpoint(NamedTuple):
    """A checkpoint as read: params in big_vision names, the flags its format implies, where it was read."""

    params: Params
    arch: dict  # VisionTransformer options the format implies (OpenCLIP: openclip.OPENCLIP_ARCH)
    local: str  # the local file or folder read (a remote orbax folder: its path)
    format: str  # npz | orbax | openclip | timm | timm_dinov2 | hf_dinov2


POSEMB_RESAMPLING = {"timm_dinov2": "bicubic", "hf_dinov2": "bicubic"}  # format -> method; others: bilinear


def read_checkpoint(path: str, *, num_heads: int, cache_dir: str | None = None, sharding: Any = None) -> RawCheckpoint:
    """Reads any supported checkpoint; `num_heads` splits fused torch attention weights; `sharding` places
    orbax arrays directly."""
    file, subtree = split_subtree(path)
    if _is_orbax(file):
        local = file if storage.is_remote(file) else storage.fetch(file)
        params = normalize_names(read_orbax(local, subtree, sharding))
        return RawCheckpoint(params, clip_numerics(params), local, "orbax")
    local = storage.fetch(file, cache_dir)
    if file.endswith(TORCH_SUFFIXES):
        if subtree:
            raise InputError(f"{path}: ':{subtree}' sub-trees apply to .npz and orbax checkpoints only")
        state_dict = openclip.read_state_dict(local)
        if dinov2.detect_layout(state_dict):
            params, arch, layout = dinov2.convert_state_dict(state_dict, num_heads, file)
            return RawCheckpoint(normalize_names(params), arch, local, layout)
        layout = openclip.detect_layout(state_dict, file)
        params, arch = openclip.convert_state_dict(state_dict, num_heads, file)
        params = normalize_names(params)
        return RawCheckpoint(params, arch or clip_numerics(params), local, layout)  # timm CLIP: norm_pre
    params = normalize_names(read_npz(local, subtree))
    return RawCheckpoint(params, clip_numerics(params), local, "npz")


def clip_numerics(params: Params) -> dict:
    """Options implied by a CLIP-style tower saved in big_vision names (e.g. our own export of an OpenCLIP
    model): `ln_pre`, which big_vision ViTs never have, means OpenCLIP's LayerNorm eps 1e-5 and exact GELU
    (OpenAI's own weights need gelu="quick", as for their .safetensors)."""
    return {"ln_eps": 1e-5, "gelu": "exact"} if "ln_pre" in params else {}


def _is_orbax(path: str) -> bool:
    if storage.is_remote(path):
        return not path.endswith((".npz", *TORCH_SUFFIXES))
    return os.path.isdir(path)


def read_npz(path: str, subtree: str = "") -> Params:
    """A big_vision / vit_jax `.npz` -> nested numpy params (prefix dropped, sub-tree selected)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a single .npy array
            raise InputError(f"{path}: a single array {loaded.shape}, not a checkpoint of named parameters (.npz)")
        with loaded as f:
            keys = list(f.files)
            prefix = next((p for p in ("params/", "opt/target/") if any(k.startswith(p) for k in keys)), "")
            if subtree:
                prefix += subtree.strip("/") + "/"
            chosen = [k for k in keys if k.startswith(prefix)]
            if not chosen:
                tops = sorted({k.split("/")[0] for k in keys})
                raise InputError(f"{path}: no parameters under '{prefix}' (top-level names: {tops})")
            return unflatten({k[len(prefix) :]: _restore_dtype(f[k]) for k in chosen})
    except InputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npz checkpoint ({e}); it may be truncated: download it again") from e


def _restore_dtype(x: np.ndarray) -> np.ndarray:
    """bfloat16 saved by numpy as 2-byte void -> bfloat16."""
    if x.dtype.kind == "V" and x.dtype.itemsize == 2:
        return x.view(ml_dtypes.bfloat16)
    return x


def normalize_names(params: Params) -> Params:
    """Legacy names -> current big_vision names (as big_vision's `fix_old_checkpoints`).

    Pre-linen numbering (`MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`) becomes 0-based
    per module type; `Transformer/posembed_input/pos_embedding` and `Transformer/pos_embedding` move to
    `pos_embedding`; an inlined MAP head (`probe` at top level) moves into `MAPHead_0`.
    """
    params = _renumber(params)
    t = params.get("Transformer", {})
    if "posembed_input" in t:
        params["pos_embedding"] = t.pop("posembed_input")["pos_embedding"]
    if "pos_embedding" in t:
        params["pos_embedding"] = t.pop("pos_embedding")
    if "probe" in params:
        names = ("probe", "MlpBlock_0", "MultiHeadDotProductAttention_0", "LayerNorm_0")
        params["MAPHead_0"] = {k: params.pop(k) for k in names if k in params}
    return params


def _renumber(tree: Any) -> Any:
    if not isinstance(tree, dict):
        return tree
    groups: dict[str, list[tuple[int, str]]] = {}
    for key in tree:
        m = re.fullmatch(r"(.*)_(\d+)", key)
        if m:
            groups.setdefault(m.group(1), []).append((int(m.group(2)), key))
    rename = {key: f"{p}_{i}" for p, members in groups.items() for i, (_, key) in enumerate(sorted(members))}
    return {rename.get(k, k): _renumber(v) for k, v in tree.items()}


def grid_rows(n_rows: int) -> tuple[int, bool]:
    """Position-embedding rows -> (grid side, has a class-token row); side 0 if neither g*g nor g*g+1."""
    side = int(round(np.sqrt(n_rows)))
    if side * side == n_rows:
        return side, False
    side = int(round(np.sqrt(n_rows - 1)))
    return (side, True) if side * side == n_rows - 1 else (0, False)


def resample_posemb(posemb: Any, n_rows: int, class_slot: bool, method: str = "bilinear") -> np.ndarray:
    """(1, N, D) -> (1, n_rows, D): the square grid resampled to a square grid of n_rows (- 1) cells.

    method: "bilinear" = scipy's zoom order=1, as big_vision; "bicubic" = torch's
    `F.interpolate(mode="bicubic", antialias=True, align_corners=False)`, as timm's `resample_abs_pos_embed`
    (DINOv2's loaders). With `class_slot` the first row is the class token's and is kept as is.
    """
    posemb = np.asarray(posemb, np.float32)
    lead = 1 if class_slot else 0
    old, new = posemb.shape[1] - lead, n_rows - lead
    gs_old, gs_new = int(round(np.sqrt(old))), int(round(np.sqrt(new)))
    if gs_old * gs_old != old or gs_new * gs_new != new:
        raise InputError(f"pos_embedding: cannot resample {old} to {new} positions; only square grids are supported")
    grid = posemb[0, lead:].reshape(gs_old, gs_old, -1)
    if method == "bicubic":
        w = antialiased_bicubic_weights(gs_old, gs_new)
        grid = np.einsum("ij,jkd,lk->ild", w, grid.astype(np.float64), w).astype(np.float32)
    else:
        grid = scipy.ndimage.zoom(grid, (gs_new / gs_old, gs_new / gs_old, 1), order=1)
    return np.concatenate([posemb[:, :lead], grid.reshape(1, gs_new * gs_new, -1)], axis=1)


def antialiased_bicubic_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix of torch's antialiased bicubic interpolation along one axis
    (align_corners=False; PIL's algorithm): Keys' cubic kernel with a = -0.5, stretched by the scale when
    shrinking, each row normalised to sum 1. Applying it along both axes is `F.interpolate(..., "bicubic",
    antialias=True)` of a 2-d grid."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        x = np.abs((np.arange(lo, hi) - center + 0.5) * inv)
        a = -0.5
        w = np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))
        weights[i, lo:hi] = w / w.sum() if w.sum() != 0 else w
    return weights


def fit_to_model(params: Params, reference: Params, *, class_slot: bool, resample: str = "bilinear") -> Params:
    """Adapts a checkpoint tree to a model's (abstract) tree: class-token position row, layout, grid size.

    A class-token row in `pos_embedding` is folded into `cls` (cls += row 0, exactly as big_vision) when
    the model has none (`class_slot` False), and a zero row is added when it has one; the two give the
    same outputs. Loop and scan layouts are converted to the model's. The grid is resampled to the
    model's image size (`resample`: resample_posemb's method).
    """
    params = dict(params)
    if "pos_embedding" in params:
        pe = np.asarray(params["pos_embedding"])
        side, has_slot = grid_rows(pe.shape[1])
        if side and has_slot and not class_slot:
            params["pos_embedding"] = pe[:, 1:]
            if "cls" in params:
                params["cls"] = np.asarray(params["cls"]) + pe[:, :1]
        elif side and not has_slot and class_slot and "cls" in params:
            params["pos_embedding"] = np.concatenate([np.zeros_like(pe[:, :1]), pe], axis=1)
        want = reference.get("pos_embedding")
        if want is not None and want.shape[1] != params["pos_embedding"].shape[1] and want.ndim == 3:
            params["pos_embedding"] = resample_posemb(params["pos_embedding"], want.shape[1], class_slot, resample)
    t, ref_t = params.get("Transformer", {}), reference.get("Transformer", {})
    if "encoderblock" in ref_t and "encoderblock_0" in t:
        params = pyloop_to_scan(params)
    elif "encoderblock_0" in ref_t and "encoderblock" in t:
        params = scan_to_pyloop(params)
    return params


def match_params(
    restored: Params,
    reference: Params,
    *,
    source: str,
    dont_load: Sequence[str] = (),
    init: Params | None = None,
) -> Params:
    """The model's tree filled from `restored`, cast to the model's dtypes; strict on names and shapes.

    reference: the model's (abstract) params. dont_load: regexes (full match on '/'-joined names) of
    parameters to take from `init` instead. Raises one InputError listing every problem.
    """
    ref, got = flatten(reference), flatten(restored)
    keep = dont_load_names(reference, dont_load)
    missing = [k for k in ref if k not in got and k not in keep]
    unexpected = [k for k in got if k not in ref]
    misshaped = [
        f"{k} {tuple(np.shape(got[k]))} vs model {tuple(ref[k].shape)}"
        for k in ref
        if k in got and k not in keep and tuple(np.shape(got[k])) != tuple(ref[k].shape)
    ]
    if missing or unexpected or misshaped:
        found = (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        problems = [f"{len(v)} {what} {v}" for what, v in found if v]
        raise InputError(
            f"{source}: checkpoint does not match the model ({describe(restored)}): {'; '.join(problems)}; "
            "pick the matching variant/options, or name parameters to leave at init in dont_load"
        )
    if keep and init is None:
        raise InputError(f"dont_load: {sorted(keep)} are left at init but no initialized parameters were given")
    initial = flatten(init) if keep else {}
    out = {k: initial[k] if k in keep else _cast(got[k], ref[k].dtype) for k in ref}
    for name in (k for k in ref if k not in keep):
        _check_finite(out[name], name, source)
    return unflatten(out)


def _check_finite(value: Any, name: str, source: str) -> None:
    """Refuses a parameter with NaN or inf values: features made with it would be NaN (whatever the format)."""
    if not jax.numpy.issubdtype(value.dtype, jax.numpy.inexact):
        return
    finite = (
        jax.numpy.isfinite(value).all()
        if isinstance(value, jax.Array)
        else np.isfinite(np.asarray(value, np.float32)).all()
    )
    if not bool(finite):
        raise InputError(
            f"{source}: parameter {name} holds NaN or inf values; the checkpoint is damaged (download it again) "
            "or was saved from a diverged training run"
        )


def _cast(x: Any, dtype: Any) -> Any:
    if x.dtype == dtype:
        return x
    return x.astype(dtype) if isinstance(x, jax.Array) else np.asarray(x).astype(dtype)


def dont_load_names(reference: Params, dont_load: Sequence[str]) -> set[str]:
    """Model parameter names matched (fully) by the `dont_load` regexes; each regex must match one."""
    names = list(flatten(reference))
    try:
        patterns = [re.compile(p) for p in dont_load]
    except re.error as e:
        raise InputError(f"dont_load: invalid regular expression ({e})") from e
    unused = [p.pattern for p in patterns if not any(p.fullmatch(k) for k in names)]
    if unused:
        raise InputError(f"dont_load {unused}: matches no model parameter; names look like {sorted(names)[:3]}")
    return {k for k in names if any(p.fullmatch(k) for p in patterns)}


def infer_config(params: Params, source: str) -> dict[str, Any]:
    """Model options a checkpoint tree implies (width, depth, mlp_dim, num_heads, patch, pooling, head...)."""
    emb = params.get("embedding", {})
    if "kernel" not in emb:
        raise InputError(f"{source}: no 'embedding/kernel' parameter; this is not a ViT checkpoint")
    t = params.get("Transformer", {})
    depth = len([k for k in t if re.fullmatch(r"encoderblock_\d+", k)])
    block = t.get("encoderblock_0", {})
    if "encoderblock" in t:
        block = jax.tree.map(lambda x: x[0], t["encoderblock"])
        depth = int(np.shape(jax.tree.leaves(t["encoderblock"])[0])[0])
    if not block:
        raise InputError(f"{source}: no 'Transformer/encoderblock_0' parameters; this is not a ViT checkpoint")
    try:
        mlp_in, mlp_out = (
            np.shape(block["MlpBlock_0"]["Dense_0"]["kernel"])[-1],
            np.shape(block["MlpBlock_0"]["Dense_1"]["kernel"])[0],
        )
        swiglu = mlp_in == 2 * mlp_out  # DINOv2 giant: Dense_0 packs the gate and the value
        mlp_dim = mlp_out
        num_heads = np.shape(block["MultiHeadDotProductAttention_0"]["query"]["kernel"])[-2]
    except KeyError as e:
        raise InputError(f"{source}: transformer block lacks {e}; this is not a big_vision-style ViT") from e
    head = params.get("head", {})
    config = dict(
        width=int(np.shape(emb["kernel"])[-1]),
        depth=depth,
        mlp_dim=int(mlp_dim),
        num_heads=int(num_heads),
        patch_size=tuple(int(s) for s in np.shape(emb["kernel"])[:2]),
        patch_bias="bias" in emb,
        pool_type="map" if "MAPHead_0" in params else "tok" if "cls" in params else "gap",
        posemb="learn" if "pos_embedding" in params else "sincos2d",
        num_classes=int(np.shape(head["kernel"])[-1]) if "kernel" in head else 0,
        head_bias="bias" in head,
        rep_size=int(np.shape(params["pre_logits"]["kernel"])[-1]) if "pre_logits" in params else False,
        pre_norm="ln_pre" in params,
        layer_scale="LayerScale_0" in block,
        num_registers=int(np.shape(params["registers"])[1]) if "registers" in params else 0,
        mlp="swiglu" if swiglu else "gelu",
    )
    return config


def describe(params: Params) -> str:
    """'width 768, depth 12, mlp 3072, heads 12, patch 16 (= B/16)' for a checkpoint tree."""
    try:
        return describe_config(infer_config(params, ""))
    except InputError:
        return "not recognisably a ViT"


def describe_config(c: dict[str, Any]) -> str:
    """The dimensions of a model config in words, with the variant name when one matches."""
    dims = (c["width"], c["depth"], c["mlp_dim"], c["num_heads"])
    name = next((v for v, d in VARIANTS.items() if d == dims), None)
    patch = c["patch_size"][0]
    known = f" (= {name}/{patch})" if name else ""
    return f"width {c['width']}, depth {c['depth']}, mlp {c['mlp_dim']}, heads {c['num_heads']}, patch {patch}{known}"


def save_big_vision_npz(path: str, params: Params, prefix: str = "params/", dtype: Any = np.float32) -> None:
    """Writes params as a big_vision `.npz` ('/'-joined keys under `prefix`), readable by timm's npz loader."""
    flat = {prefix + k: np.asarray(v).astype(dtype) for k, v in flatten(params).items()}
    atomic.save_npz(path, **flat)


def save_orbax(path: str, params: Params) -> None:
    """Writes params as an orbax checkpoint folder; an existing one is replaced only once the new one is
    complete."""
    import orbax.checkpoint as ocp

    with atomic.atomic_directory(path) as tmp:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp, params)
        checkpointer.wait_until_finished()


def read_orbax(path: str, subtree: str = "", sharding: Any = None) -> Params:
    """An orbax checkpoint folder -> params, restored directly onto `sharding` (one Sharding for all arrays).

    A top-level `params` entry (a saved train state) is selected automatically; `subtree` picks a key below.
    """
    import orbax.checkpoint as ocp

    location = path if storage.is_remote(path) else os.path.abspath(path)
    checkpointer = ocp.StandardCheckpointer()
    try:
        meta = checkpointer.metadata(location)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a readable orbax checkpoint ({e})") from e
    tree = getattr(meta, "item_metadata", meta)
    tree = getattr(tree, "tree", tree)
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree)
    try:
        restored = checkpointer.restore(location, target)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InputError(f"{path}: orbax checkpoint is incomplete or damaged ({e})") from e
    if "params" in restored and "embedding" not in restored:
        restored = restored["params"]
    for part in filter(None, subtree.split("/")):
        if part not in restored:
            raise InputError(f"{path}: no sub-tree '{part}' (found {sorted(restored)})")
        restored = restored[part]
    return _to_dict(restored)


def _to_dict(tree: Any) -> Any:
    if hasattr(tree, "items"):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree
