"""The package's cache folder and what it holds between runs: downloaded checkpoints, decoded images
(alignment_jax/extract/image_cache.py) and JAX's compiled programs.

    $ALIGNMENT_JAX_CACHE (default ~/.cache/alignment_jax)/
        <hash>-<file>   checkpoint copies (models/storage.py)
        images/         decoded-image caches, one folder per source and decoding (images.cache=auto)
        jax/            JAX's persistent compilation cache (compilation_cache=auto)

Everything in it can be deleted at any time; it is made again when needed.
"""

import os

import jax

from alignment_jax.errors import InputError

MIN_COMPILE_S = 0.1
_compilation_cache: str | None = None  # the folder this process last applied ("" = off)
_jax_own_cache = ""  # JAX's cache folder before the first call (JAX_COMPILATION_CACHE_DIR): auto keeps it


def default_cache_dir() -> str:
    """$ALIGNMENT_JAX_CACHE, else ~/.cache/alignment_jax."""
    return os.environ.get("ALIGNMENT_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "alignment_jax")


def cache_folder(setting: str, name: str, field: str) -> str:
    """The folder a cache setting names: `auto` = <cache folder>/<name>, `off` = "" (no cache), else the
    setting itself (a folder). `field` names the setting in the error for an empty one."""
    if not isinstance(setting, str) or not setting.strip():
        raise InputError(f"{field}: empty; use auto (in {default_cache_dir()}), off, or a folder")
    if setting == "off":
        return ""
    return os.path.join(default_cache_dir(), name) if setting == "auto" else os.path.abspath(setting)


def use_compilation_cache(setting: str) -> str:
    """Points JAX's persistent compilation cache at the folder `setting` names (auto | off | DIR); returns it
    ("" when off). Call before the first compilation: a rerun, or the next model with the same shapes,
    then loads compiled programs instead of compiling them again.

    auto keeps a folder already chosen for JAX (JAX_COMPILATION_CACHE_DIR) and otherwise uses
    <cache folder>/jax. Programs that compile in under MIN_COMPILE_S are not stored (JAX's own default
    threshold is 1 s, which leaves out every program of a small run on a CPU)."""
    global _compilation_cache, _jax_own_cache
    folder = cache_folder(setting, "jax", "compilation_cache")
    if _compilation_cache is None:
        _jax_own_cache = jax.config.jax_compilation_cache_dir or ""
    if setting == "auto" and _jax_own_cache:
        folder = _jax_own_cache  # the user's own choice for JAX
    if folder == _compilation_cache:
        return folder
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # JAX opens its cache once per process: open it (again) at the new place
    _compilation_cache = folder
    jax.config.update("jax_enable_compilation_cache", bool(folder))
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return folder
