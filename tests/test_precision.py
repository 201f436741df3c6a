"""float32 means float32: each model.dtype's matmul precision reaches the compiled computation, the probe's and
the similarities' matmuls are full float32, and features made at different precisions never share a store.

On a CPU every setting computes float32, so the numbers cannot show it: the compiled programs do. A GPU
comparison is bench/precision.py.
"""

import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError
from alignment_jax.extract.pipeline import model_extractor
from alignment_jax.models.registry import DTYPES, load_model
from alignment_jax.models.vit import make_vit
from alignment_jax.stages import extract as extract_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HLO_PRECISION = {"float32": "{highest,highest}", "tensorfloat32": "{high,high}", "bfloat16": None}
MLIR_PRECISION = {"float32": "HIGHEST", "tensorfloat32": "HIGH", "bfloat16": "DEFAULT"}


def matmuls(mlir: str) -> list[str]:
    """The dot_general and convolution lines of StableHLO text."""
    return [line for line in mlir.splitlines() if re.search(r"stablehlo\.(dot_general|convolution)", line)]


def precision_of(line: str) -> set[str]:
    """The operand precisions a StableHLO dot_general / convolution line names ({"DEFAULT"} when none)."""
    return set(re.findall(r"precision[ =<\[]+(DEFAULT|HIGHEST|HIGH)\b", line)) or {"DEFAULT"}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_each_dtype_reaches_every_matmul_of_the_compiled_model(dtype):
    model = load_model("mu/8", image_size=16, pool_type="map", num_classes=3, dtype=dtype)
    x = jnp.zeros((2, 16, 16, 3))
    lowered = jax.jit(model.apply).lower(x)
    lines = matmuls(lowered.as_text())
    assert len(lines) >= 15  # patch conv, q/k/v/out, attention, MLP, MAP head, head
    assert all(precision_of(line) == {MLIR_PRECISION[dtype]} for line in lines), lines
    if dtype == "bfloat16":  # bfloat16 operands in the blocks, float32 accumulation
        assert sum("xbf16>" in line for line in lines) >= 8
    compiled = [line for line in lowered.compile().as_text().splitlines() if re.search(r" (dot|convolution)\(", line)]
    assert len(compiled) >= 15
    for line in compiled:  # after XLA's passes, what the device runs
        if HLO_PRECISION[dtype]:
            assert f"operand_precision={HLO_PRECISION[dtype]}" in line, line
        else:
            assert "operand_precision" not in line, line
    assert model.info["matmul_precision"] == DTYPES[dtype][1] and model.info["dtype"] == dtype


def test_bad_settings_fail_early():
    config = base_config()
    config.model.dtype = "float16"
    with pytest.raises(InputError, match="model.dtype='float16' is not one of float32, tensorfloat32, bfloat16"):
        extract_stage.check(config)
    with pytest.raises(InputError, match="model.matmul_precision 'tf32'"):
        make_vit("mu/8", matmul_precision="tf32").init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
    config = base_config()
    config.model.standin, config.model.variant = True, "B/16"
    with pytest.raises(InputError, match="model.standin: model.name '' is not a registry entry"):
        extract_stage.check(config)


def test_features_made_at_another_precision_are_another_store():
    keys = {}
    for dtype in DTYPES:
        config = base_config()
        config.model.variant, config.model.image_size, config.model.dtype = "mu/8", 16, dtype
        _, _, by_layer = model_extractor(config)
        (keys[dtype],) = by_layer.values()
    assert [k["model"]["matmul_precision"] for k in keys.values()] == ["float32", "tensorfloat32", "bfloat16"]
    assert keys["float32"]["model"]["config"]["matmul_precision"] == "float32"
    serialized = {json.dumps(k, sort_keys=True) for k in keys.values()}
    assert len(serialized) == 3  # the store name is a hash of the key: three stores


SCRIPT = textwrap.dedent(
    """
    import os, sys
    import jax, numpy as np
    from alignment_jax.config.base import base_config
    from alignment_jax.data.synthetic import make_world
    from alignment_jax.evaluation.zero_shot import odd_one_out
    from alignment_jax.extract.pipeline import model_extractor
    from alignment_jax.probing.cross_validation import ProbeSettings, run_probe

    root = sys.argv[1]
    for dtype in ("float32", "tensorfloat32", "bfloat16"):  # the extraction path of a run, on a SigLIP stand-in
        jax.config.update("jax_dump_ir_to", os.path.join(root, "extract_" + dtype))
        config = base_config()
        config.model.name, config.model.standin, config.model.dtype = "siglip-b16-224", True, dtype
        config.model.image_size, config.images.batch_size = 32, 2
        extractor, _, _ = model_extractor(config)
        extractor(np.zeros((2, 32, 32, 3), np.uint8)).block_until_ready()
    jax.config.update("jax_dump_ir_to", os.path.join(root, "probe"))
    world = make_world(n_objects=40, n_concepts=4, n_dims=8, n_train=3000, n_test=300, seed=0)
    for protocol, regularizer in (("fast", "frobenius"), ("paper", "orthonormal")):  # matrix and row formulations
        probe = base_config().probe
        probe.protocol, probe.regularizer, probe.lambdas, probe.folds = protocol, regularizer, (1e-2,), 2
        probe.epochs = 2
        settings = ProbeSettings.from_config(probe).for_width(8)
        run_probe(world.features, world.train, world.test, settings, progress=False)
    for kind in ("cosine", "dot", "euclidean"):
        odd_one_out(world.features, world.train, kind, bootstrap=0)
    print("ok")
    """
)


def test_every_matmul_a_run_compiles_has_the_configured_precision(tmp_path):
    """Every program the extraction, the probe (two protocols) and zero-shot compile, dumped by JAX."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    for folder, want in [(f"extract_{d}", MLIR_PRECISION[d]) for d in DTYPES] + [("probe", "HIGHEST")]:
        lines = [line for path in glob.glob(str(tmp_path / folder / "*.mlir")) for line in matmuls(open(path).read())]
        assert len(lines) >= 10, folder
        wrong = [line.strip() for line in lines if precision_of(line) != {want}]
        assert not wrong, f"{folder}: {len(wrong)} matmuls not at {want}: {wrong[:3]}"
    np.testing.assert_equal(sorted(os.listdir(tmp_path)), sorted([*(f"extract_{d}" for d in DTYPES), "probe"]))
