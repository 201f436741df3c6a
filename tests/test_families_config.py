"""configs/families.py: the family comparison sweep resolves to one configs/family.py run per registry entry, with
stand-ins under runlocal (running it whole takes minutes: docs/models.md)."""

from alignment_jax.config import files as config_files
from alignment_jax.models.registry import MODELS
from alignment_jax.stages import extract


def resolved(arg: str) -> dict:
    sweep = config_files.load_config("configs/families.py", arg)
    specs = config_files.parse_specs(sweep.models)
    return {spec.name: config_files.resolve(spec, sweep.shared) for spec in specs}


def test_the_sweep_compares_families_and_runs_locally_on_standins():
    configs = resolved("runlocal=True")
    names = {run: config.model.name for run, config in configs.items()}
    sources = {MODELS[name].source for name in names.values()}
    assert {"vit_jax", "openclip", "big_vision", "timm", "bit"} <= sources
    assert {"dinov2-b14", "dinov2-b14-reg4", "bit-m-r50x1"} <= set(names.values())
    for config in configs.values():
        assert config.model.standin and config.world.enabled and config.world.n_objects == 200
        extract.check(config)  # the settings pass the extract stage's checks
    real = resolved("")
    assert not any(config.model.standin or config.world.enabled for config in real.values())
    with_alignet = resolved("alignet=True")
    assert {"alignet-siglip-b-base", "alignet-siglip-b-alignet"} <= {c.model.name for c in with_alignet.values()}
