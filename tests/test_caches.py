"""The package cache folder: JAX's persistent compilation cache, used by a second run on the same shapes."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alignment_jax import caches
from alignment_jax.data.synthetic import make_world
from alignment_jax.errors import InputError

RUN = textwrap.dedent("""
    import json, sys
    import jax
    events = []
    jax.monitoring.register_event_listener(lambda event, **kwargs: events.append(event))
    from alignment_jax import probe
    from alignment_jax.config.base import base_config
    features, root, workdir, setting = sys.argv[1:]
    config = base_config()
    config.features, config.things.root, config.stages = features, root, "probe"
    config.probe.lambdas, config.probe.folds, config.progress = (1e-3,), 2, "off"
    config.compilation_cache = setting
    probe.run(config, workdir)
    hits = events.count("/jax/compilation_cache/cache_hits")
    print(json.dumps({"hits": hits, "writes": events.count("/jax/compilation_cache/cache_misses")}))
""")


@pytest.fixture()
def small_things(tmp_path):
    """A small THINGS layout (40 objects, 2,000 training triplets) and its features.npy."""
    world = make_world(n_objects=40, n_concepts=4, n_dims=8, n_train=2000, n_test=400, n_repeated_sets=20, seed=0)
    root = tmp_path / "things"
    os.makedirs(root / "triplets")
    np.save(root / "triplets" / "train_90.npy", world.train)
    np.save(root / "triplets" / "test_10.npy", world.test)
    np.save(root / "features.npy", world.features)
    return root


def _probe_run(things, workdir, cache_root) -> dict:
    env = {**os.environ, "ALIGNMENT_JAX_CACHE": str(cache_root), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(things / "features.npy"), str(things), str(workdir), "auto"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_probe_run_loads_its_programs_instead_of_compiling_them(small_things, tmp_path):
    first = _probe_run(small_things, tmp_path / "run1", tmp_path / "cache")
    entries = os.listdir(tmp_path / "cache" / "jax")
    assert first["writes"] >= 1 and first["hits"] == 0 and len(entries) == first["writes"]
    second = _probe_run(small_things, tmp_path / "run2", tmp_path / "cache")
    assert second["hits"] >= 1 and second["hits"] >= first["writes"] - 1  # a program near the threshold may flip


def test_settings_reach_jax(monkeypatch, tmp_path):
    """off disables JAX's cache, a folder becomes its folder, auto keeps a folder the user gave JAX (every
    time, not only the first); back to the session's own at the end."""
    import jax

    theirs = str(tmp_path / "theirs")
    try:
        assert caches.use_compilation_cache(str(tmp_path / "own")) == str(tmp_path / "own")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "own") and jax.config.jax_enable_compilation_cache
        assert jax.config.jax_persistent_cache_min_compile_time_secs == caches.MIN_COMPILE_S
        assert caches.use_compilation_cache("off") == ""
        assert not jax.config.jax_enable_compilation_cache
        with monkeypatch.context() as patch:
            patch.setattr(caches, "_jax_own_cache", theirs)
            assert caches.use_compilation_cache("auto") == caches.use_compilation_cache("auto") == theirs
            assert jax.config.jax_compilation_cache_dir == theirs
    finally:
        caches.use_compilation_cache("auto")
    assert jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir != theirs


def test_cache_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNMENT_JAX_CACHE", str(tmp_path))
    assert caches.cache_folder("auto", "images", "images.cache") == str(tmp_path / "images")
    assert caches.cache_folder("off", "images", "images.cache") == ""
    assert caches.cache_folder("rel/dir", "images", "images.cache") == os.path.abspath("rel/dir")
    with pytest.raises(InputError, match="images.cache: empty; use auto"):
        caches.cache_folder("", "images", "images.cache")
