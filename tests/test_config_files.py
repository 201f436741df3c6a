"""Model specs `[NAME=]PATH[:ARG][ KEY=VALUE ...]`: parsing, loading, overrides."""

import ml_collections
import pytest
from ml_collections.config_dict import placeholder

from alignment_jax.config import files as config_files
from alignment_jax.config.base import base_config
from alignment_jax.config.files import parse_spec, parse_specs, split_specs
from alignment_jax.errors import InputError


def test_split_keeps_big_vision_arguments_with_their_file():
    text = "configs/vit.py:variant=B/16,runlocal=True,x=configs/demo.py probe.lambdas=0.1,0.01\nconfigs/c.py"
    assert split_specs(text) == [
        "configs/vit.py:variant=B/16,runlocal=True",
        "x=configs/demo.py probe.lambdas=0.1,0.01",
        "configs/c.py",
    ]


def test_parse_spec_parts_and_default_names():
    spec = parse_spec("dot=configs/demo.py:features=True similarity=dot seed=3")
    assert (spec.name, spec.path, spec.arg) == ("dot", "configs/demo.py", "features=True")
    assert spec.overrides == (("similarity", "dot"), ("seed", "3"))
    assert parse_spec("configs/vit_b16.py:runlocal=True").name == "vit_b16_runlocal-True"
    assert parse_spec("configs/demo.py similarity=dot").name == "demo_similarity-dot"
    long = parse_spec("configs/demo.py " + " ".join(f"things.root=/data/things_{i}" for i in range(9))).name
    assert len(long) == 80 and long != parse_spec("configs/demo.py things.root=/other").name


@pytest.mark.parametrize(
    "specs, message",
    [
        ("", "no model config given"),
        ("demo", "'demo' is not a model spec"),
        ("configs/demo.py similarity", "'similarity' is not a KEY=VALUE override"),
        ("a/b=configs/demo.py", "the name 'a/b' must be"),
        ("configs/demo.py,configs/demo.py", "more than one model named demo"),
    ],
)
def test_bad_specs(specs, message):
    with pytest.raises(InputError, match=message):
        parse_specs(specs)


def test_tuple_of_specs_is_not_split():
    specs = parse_specs(("configs/vit.py:variant=B/16,runlocal=True", "configs/demo.py"))
    assert [(s.path, s.arg) for s in specs] == [
        ("configs/vit.py", "variant=B/16,runlocal=True"),
        ("configs/demo.py", ""),
    ]


def test_load_config_calls_get_config_with_the_argument(tmp_path):
    path = tmp_path / "echo.py"
    path.write_text(
        "import ml_collections\ndef get_config(arg='none'):\n    return ml_collections.ConfigDict({'arg': arg})\n"
    )
    assert config_files.load_config(str(path), "a=1,b").arg == "a=1,b"
    assert config_files.load_config(str(path)).arg == "none"
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(InputError, match="empty.py: no get_config function"):
        config_files.load_config(str(tmp_path / "empty.py"))
    with pytest.raises(InputError, match="nothere.py: config file not found"):
        config_files.load_config(str(tmp_path / "nothere.py"))


def test_text_values_take_the_field_type():
    config = base_config()
    for key, text in [
        ("similarity", "dot"),
        ("seed", "7"),
        ("probe.lambdas", "0.5"),
        ("probe.lr", "2"),
        ("probe.bias", "true"),
        ("model.layer", "3"),
    ]:
        config_files.set_from_text(config, key, text, source="t")
    assert (config.similarity, config.seed, config.probe.lambdas) == ("dot", 7, (0.5,))
    assert (config.probe.lr, config.probe.bias, config.model.layer) == (2.0, True, "3")
    for key, text, message in [
        ("seed", "x", "seed='x': expected type int, like its default 7"),
        ("probe.bias", "maybe", "expected true or false"),
        ("probe.nothing", "1", "no field 'nothing'"),
        ("nowhere.seed", "1", "no section 'nowhere'"),
        ("seed", "1.5", "seed='1.5': expected type int"),
    ]:
        with pytest.raises(InputError, match=message):
            config_files.set_from_text(config, key, text, source="t")


def test_shared_overrides_then_spec_overrides(tmp_path):
    (tmp_path / "m.py").write_text(
        "from alignment_jax.config.base import base_config\n"
        "def get_config(arg=''):\n"
        "    config = base_config()\n"
        "    config.probe.folds = 5\n"
        "    return config\n"
    )
    shared = ml_collections.ConfigDict()
    shared.probe = ml_collections.ConfigDict({"folds": placeholder(int), "lambdas": (0.1,)})
    shared.seed = 4
    spec = parse_spec(f"{tmp_path / 'm.py'} seed=9")
    config = config_files.resolve(spec, shared)
    assert (config.probe.folds, config.probe.lambdas, config.seed) == (5, (0.1,), 9)
    shared.probe.folds = 2
    assert config_files.resolve(spec, shared).probe.folds == 2
    assert config_files.fingerprint(config_files.resolve(spec, shared)) != config_files.fingerprint(config)
    assert config_files.fingerprint(config_files.resolve(spec, shared)) == config_files.fingerprint(
        config_files.resolve(spec, shared)
    )
