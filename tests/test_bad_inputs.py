"""A hostile user's inputs against the command line (issue 11): every bad or odd input ends in one line on
stderr naming the file or setting and exit status 2 (130 for Ctrl-C), never a traceback; the workdir's
earlier outputs stay as they were or are moved aside whole; the odd inputs that used to give silently wrong
numbers give the right ones.

Most cases run in this process through `cli.main`, the function `python -m alignment_jax.probe` runs (a
process costs seconds of imports); a few need a real process: Ctrl-C, SIGKILL, a second run at once.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alignment_jax import atomic, cli, probe, provenance, sweep, workdir
from alignment_jax.data.synthetic import make_world
from alignment_jax.errors import InputError
from alignment_jax.evaluation import rsa
from alignment_jax.extract import memory
from alignment_jax.models import checkpoints
from alignment_jax.models.registry import load_model
from alignment_jax.probing.cross_validation import DIVERGED_CROSS_ENTROPY, diverged_configurations
from alignment_jax.probing.sweep import SweepOutcome

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # config_flags, on every --config
REPO = Path(__file__).resolve().parent.parent
FEATURES_CONFIG = str(REPO / "configs" / "features.py")
DEMO_CONFIG = str(REPO / "configs" / "demo.py")
SMALL_WORLD = [  # the demo world, small: world + extraction in about a second
    "--config.world.n_objects=24",
    "--config.world.n_train=600",
    "--config.world.n_test=200",
    "--config.world.n_repeated_sets=10",
    "--config.world.n_transfer=8",
    "--config.progress=off",
    "--config.zero_shot.bootstrap=0",
    "--config.model.layers=",  # model.layer alone (one feature store)
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small THINGS-layout world: triplets, object list, features, concept embedding, a transfer dataset."""
    root = tmp_path_factory.mktemp("bad_inputs")
    world = make_world(n_objects=60, n_concepts=4, n_dims=8, n_train=3000, n_test=600, n_transfer=12, seed=3)
    things = root / "things"
    (things / "triplets").mkdir(parents=True)
    np.save(things / "triplets" / "train_90.npy", np.concatenate([world.train, world.repeats]))
    np.save(things / "triplets" / "test_10.npy", world.test)
    (things / "things_concepts.tsv").write_text("Word\tuniqueID\n" + "".join(f"w{i}\tobj_{i}\n" for i in range(60)))
    np.save(root / "features.npy", world.features)
    np.save(root / "embedding.npy", world.embedding)
    (root / "labels.txt").write_text("".join(f"{name}\n" for name in world.concept_names))
    rsm = root / "transfer_rsm"
    rsm.mkdir()
    np.save(rsm / "similarity.npy", world.transfer_embedding @ world.transfer_embedding.T)
    np.save(root / "transfer_features.npy", world.transfer_features)
    return root, world


def base_args(root: Path, *extra: str) -> list[str]:
    return [
        f"--config={FEATURES_CONFIG}",
        f"--config.features={root / 'features.npy'}",
        f"--config.things.root={root / 'things'}",
        "--config.zero_shot.bootstrap=0",
        "--config.probe.lambdas=0.01",
        "--config.probe.folds=2",
        "--config.probe.epochs=60",
        *extra,
    ]


def run_cli(capsys, *args: str, command=probe._command) -> tuple[int, str, str]:
    """`python -m alignment_jax.probe ARGS` in this process: (exit status, stdout, stderr)."""
    status = cli.main(command, ["probe.py", *args])
    out, err = capsys.readouterr()
    return status, out, err


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime)} of every file under `folder`."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def temporary_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if atomic.TEMPORARY in p.name]


def assert_one_line(status: int, err: str, *names: str) -> str:
    """Exit 2 and exactly one line on stderr that names every one of `names`; returns the line."""
    lines = err.strip().splitlines()
    assert status == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(name in lines[0] for name in names), (names, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A workdir after a successful zero_shot + probe run on the data (copied into each case's workdir, so
    every case also shows that a failing run leaves earlier outputs alone)."""
    root, _ = data
    work = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(probe._command, ["probe.py", *base_args(root), f"--workdir={work}"]) == 0
    return work


def _write(path: Path, content: bytes | str) -> str:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _npy(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


# Each case: (name, function(tmp, root, world) -> extra args, words the error line must hold). The args come
# after base_args and override it; args that start with another --config replace base_args.
DEMO = f"--config={DEMO_CONFIG}"
CONCEPTS = "--config.stages=concepts"
TRANSFER = "--config.stages=transfer"


def _concepts(r: Path, *more: str) -> list[str]:
    return [CONCEPTS, f"--config.concepts.embedding={r / 'embedding.npy'}", *more]


def _transfer(r: Path, *more: str) -> list[str]:
    return [TRANSFER, f"--config.transfer.datasets=rsm:{r / 'transfer_rsm'}", *more]


def _config(t: Path, name: str, text: bytes | str) -> list[str]:
    return [f"--config={_write(t / name, text)}"]


def _train(t: Path, array: np.ndarray, *more: str) -> list[str]:
    return [f"--config.things.train={_npy(t / 't.npy', array)}", *more]


def _rows(t: Path, w) -> str:
    return f"--config.transfer.features=transfer_rsm:{_npy(t / 'tf.npy', w.transfer_features[:5])}"


def _features(t: Path, array: np.ndarray, *more: str) -> list[str]:
    return [f"--config.features={_npy(t / 'f.npy', array)}", *more]


CASES = [
    # settings, checked before anything is written
    ("folds_one", lambda t, r, w: ["--config.probe.folds=1"], ["probe.folds=1"]),
    ("folds_zero", lambda t, r, w: ["--config.probe.folds=0"], ["probe.folds=0"]),
    ("standardize", lambda t, r, w: ["--config.probe.standardize=bogus"], ["probe.standardize='bogus'"]),
    ("temperature_zero", lambda t, r, w: ["--config.probe.temperature=0"], ["probe.temperature=0"]),
    ("temperature_negative", lambda t, r, w: ["--config.probe.temperature=-2"], ["probe.temperature=-2"]),
    ("temperature_nan", lambda t, r, w: ["--config.probe.temperature=nan"], ["probe.temperature=nan"]),
    ("lambda_negative", lambda t, r, w: ["--config.probe.lambdas=(0.1,-0.1)"], ["probe.lambdas"]),
    ("lambda_inf", lambda t, r, w: ["--config.probe.lambdas=(1e-2,1e999)"], ["probe.lambdas=inf"]),
    ("lr_zero", lambda t, r, w: ["--config.probe.lr=0"], ["probe.lr=0"]),
    ("lr_inf", lambda t, r, w: ["--config.probe.lr=1e999"], ["probe.lr=inf"]),
    ("lrs_negative", lambda t, r, w: ["--config.probe.lrs=(0.1,-1.0)"], ["probe.lrs"]),
    ("optimizer", lambda t, r, w: ["--config.probe.optimizer=adagrad"], ["probe.optimizer='adagrad'"]),
    ("protocol", lambda t, r, w: ["--config.probe.protocol=slow"], ["probe.protocol='slow'"]),
    ("split", lambda t, r, w: ["--config.probe.split=pairs"], ["probe.split='pairs'"]),
    ("regularizer", lambda t, r, w: ["--config.probe.regularizer=l1"], ["probe.regularizer='l1'"]),
    ("init", lambda t, r, w: ["--config.probe.init=zeros"], ["probe.init='zeros'"]),
    ("select_by", lambda t, r, w: ["--config.probe.select_by=f1"], ["probe.select_by='f1'"]),
    ("epochs_zero", lambda t, r, w: ["--config.probe.epochs=0"], ["probe.epochs=0"]),
    ("batch_negative", lambda t, r, w: ["--config.probe.batch_size=-5"], ["probe.batch_size=-5"]),
    ("patience_zero", lambda t, r, w: ["--config.probe.patience=0"], ["probe.patience=0"]),
    ("min_delta", lambda t, r, w: ["--config.probe.min_delta=-1.0"], ["probe.min_delta=-1"]),
    ("clip_norm", lambda t, r, w: ["--config.probe.clip_norm=-1.0"], ["probe.clip_norm=-1"]),
    ("seed_negative", lambda t, r, w: ["--config.seed=-1"], ["seed=-1"]),
    ("seed_huge", lambda t, r, w: ["--config.seed=1099511627776"], ["seed=1099511627776"]),
    ("similarity", lambda t, r, w: ["--config.similarity=manhattan"], ["similarity='manhattan'"]),
    ("stage_unknown", lambda t, r, w: ["--config.stages=zero_shot,dance"], ["unknown stage(s) ['dance']"]),
    ("bootstrap_negative", lambda t, r, w: ["--config.zero_shot.bootstrap=-1"], ["zero_shot.bootstrap=-1"]),
    ("top_k_zero", lambda t, r, w: _concepts(r, "--config.concepts.top_k=0"), ["concepts.top_k=0"]),
    ("kernel", lambda t, r, w: _transfer(r, "--config.transfer.kernels=cosine,rbf"), ["'rbf'"]),
    ("transfer_bootstrap", lambda t, r, w: _transfer(r, "--config.transfer.bootstrap=-3"), ["transfer.bootstrap=-3"]),
    ("dataset_kind", lambda t, r, w: [TRANSFER, "--config.transfer.datasets=movies:/x"], ["kind 'movies'"]),
    # image and model settings (the demo extracts features from images)
    ("num_workers", lambda t, r, w: [DEMO, "--config.images.num_workers=-1"], ["images.num_workers=-1"]),
    ("image_batch_zero", lambda t, r, w: [DEMO, "--config.images.batch_size=0"], ["images.batch_size=0"]),
    ("image_size", lambda t, r, w: [DEMO, "--config.model.image_size=-32"], ["model.image_size=-32"]),
    ("prefetch", lambda t, r, w: [DEMO, "--config.images.prefetch=0"], ["images.prefetch=0"]),
    ("shard_size", lambda t, r, w: [DEMO, "--config.images.shard_size=0"], ["images.shard_size=0"]),
    ("store_format", lambda t, r, w: [DEMO, "--config.images.store_format=zarr"], ["images.store_format='zarr'"]),
    ("resize", lambda t, r, w: [DEMO, "--config.images.resize=stretch"], ["images.resize='stretch'"]),
    ("pooling", lambda t, r, w: [DEMO, "--config.images.token_pooling=max"], ["images.token_pooling='max'"]),
    ("dtype", lambda t, r, w: [DEMO, "--config.model.dtype=float16"], ["model.dtype='float16'"]),
    ("model_name", lambda t, r, w: [DEMO, "--config.model.name=vit-huge-9000"], ["model 'vit-huge-9000'"]),
    ("world_objects", lambda t, r, w: [DEMO, "--config.world.n_objects=2"], ["world.n_objects=2"]),
    ("world_dims", lambda t, r, w: [DEMO, "--config.world.n_dims=3"], ["world.n_dims=3"]),
    # the command line and the config file
    ("extra_argument", lambda t, r, w: ["surplus"], ["unexpected argument(s) ['surplus']"]),
    ("unknown_field", lambda t, r, w: ["--config.probe.nope=1"], ["--config.probe.nope: unknown config field"]),
    ("bad_literal", lambda t, r, w: ["--config.probe.folds=x"], ["--config.probe.folds=x"]),
    ("config_syntax", lambda t, r, w: _config(t, "syntax.py", SYNTAX_ERROR), ["syntax.py", "SyntaxError", "line 1"]),
    ("config_raises", lambda t, r, w: _config(t, "raises.py", RAISES), ["raises.py", "ZeroDivisionError", "line 2"]),
    ("config_import", lambda t, r, w: _config(t, "imports.py", IMPORTS), ["imports.py", "No module named 'no_such_x'"]),
    ("config_missing", lambda t, r, w: [f"--config={t / 'absent.py'}"], ["absent.py: config file not found"]),
    ("config_without_get_config", lambda t, r, w: _config(t, "empty.py", "x = 1\n"), ["empty.py", "no get_config"]),
    ("config_not_utf8", lambda t, r, w: _config(t, "latin.py", LATIN1), ["latin.py", "SyntaxError"]),
    ("config_returns_dict", lambda t, r, w: _config(t, "d.py", RETURNS_DICT), ["d.py", "get_config returned dict"]),
    ("config_misspelt_field", lambda t, r, w: _config(t, "typo.py", TYPO_CONFIG), ["unknown field(s) probe.lamdas"]),
    # input files
    ("triplets_not_utf8", lambda t, r, w: [f"--config.things.train={_write(t / 't.txt', BAD_TRIPLETS)}"],
     ["t.txt", "not UTF-8", "line 2"]),
    ("objects_not_utf8", lambda t, r, w: [f"--config.things.objects={_write(t / 'ids.txt', BAD_IDS)}"],
     ["ids.txt", "not UTF-8"]),
    ("tsv_without_uniqueid", lambda t, r, w: [f"--config.things.objects={_write(t / 'c.tsv', SHORT_TSV)}"],
     ["c.tsv", "line 3 has no uniqueID"]),
    ("labels_not_utf8", lambda t, r, w: _concepts(r, f"--config.concepts.labels={_write(t / 'l.txt', BAD_LABELS)}"),
     ["l.txt", "not UTF-8"]),
    ("embedding_not_utf8", lambda t, r, w: [CONCEPTS, f"--config.concepts.embedding={_write(t / 'e.txt', BAD_TABLE)}"],
     ["e.txt", "not UTF-8"]),
    ("embedding_negative", lambda t, r, w: [CONCEPTS, f"--config.concepts.embedding={_npy(t / 'e.npy', -w.embedding)}"],
     ["e.npy", "negative weight"]),
    ("features_no_columns", lambda t, r, w: _features(t, np.zeros((60, 0))), ["f.npy", "no columns"]),
    ("features_no_rows", lambda t, r, w: _features(t, np.zeros((0, 8))), ["f.npy", "no rows"]),
    ("features_truncated", lambda t, r, w: [f"--config.features={_truncated(t / 'f.npy', w.features)}"],
     ["f.npy", "truncated"]),
    ("features_npz", lambda t, r, w: [f"--config.features={_npz_named_npy(t / 'f.npy', w.features)}"],
     ["f.npy", ".npz archive"]),
    ("features_pickle", lambda t, r, w: [f"--config.features={_pickled(t / 'f.npy')}"], ["f.npy", "Python objects"]),
    ("features_nan", lambda t, r, w: _features(t, _with_nan(w.features)), ["f.npy", "NaN or inf in features (row 3"]),
    ("features_beyond_float32", lambda t, r, w: _features(t, w.features.astype(np.float64) * 1e300),
     ["f.npy", "beyond float32's range"]),
    ("features_below_float32", lambda t, r, w: _features(t, w.features.astype(np.float64) * 1e-300),
     ["f.npy", "below float32's range"]),
    ("transfer_without_datasets", lambda t, r, w: [TRANSFER], ["transfer.datasets is empty"]),
    ("concepts_without_embedding", lambda t, r, w: [CONCEPTS], ["concepts.embedding is empty"]),
    ("features_text", lambda t, r, w: _features(t, np.array([["a"] * 8] * 60)), ["f.npy", "numeric"]),
    ("features_fewer_rows", lambda t, r, w: _features(t, w.features[:40]), ["f.npy: 40 feature rows", "60 objects"]),
    ("features_fewer_than_triplets",
     lambda t, r, w: _features(t, w.features[:40], "--config.things.root=",
                               f"--config.things.train={r / 'things' / 'triplets' / 'train_90.npy'}"),
     ["f.npy: 40 feature rows", "train_90.npy"]),
    ("triplets_strings", lambda t, r, w: _train(t, np.array([["a", "b", "c"]])), ["t.npy", "must be integers"]),
    ("triplets_fraction", lambda t, r, w: [f"--config.things.train={_write(t / 't.txt', '0 1 2.5')}"],
     ["t.txt", "non-integer"]),
    ("triplets_repeat", lambda t, r, w: _train(t, np.array([[0, 1, 2], [4, 4, 5]])), ["t.npy", "repeats an object"]),
    ("triplets_empty",
     lambda t, r, w: _train(t, np.zeros((0, 3), int), f"--config.things.test={_npy(t / 'e.npy', np.zeros((0, 3)))}"),
     ["t.npy", "no triplets"]),
    ("triplets_shape", lambda t, r, w: _train(t, np.zeros((5, 4), int)), ["t.npy", "shape (T, 3)"]),
    ("one_based_zero",
     lambda t, r, w: _train(t, np.array([[1, 2, 3], [0, 4, 5]], np.uint8), "--config.things.one_based=True"),
     ["t.npy", "index 0", "set one_based=False"]),
    ("one_based_too_big", lambda t, r, w: _train(t, np.array([[1, 2, 61]]), "--config.things.one_based=True"),
     ["t.npy", "index 61 out of range 1..60"]),
    ("zero_based_one_too_big", lambda t, r, w: _train(t, np.array([[1, 2, 60]])),
     ["t.npy", "index 60 out of range", "set one_based=True"]),
    ("folds_beyond_objects", lambda t, r, w: ["--config.probe.folds=61"], ["probe.folds=61"]),
    ("folds_without_triplets", lambda t, r, w: _train(t, w.train[:4], "--config.probe.folds=3"),
     ["probe.folds=3", "t.npy"]),
    ("constant_features", lambda t, r, w: _features(t, np.ones((60, 8))), ["features are constant"]),
    ("transfer_missing_folder", lambda t, r, w: [TRANSFER, f"--config.transfer.datasets=rsm:{t / 'x'}"],
     ["folder not found"]),
    ("transfer_features_name", lambda t, r, w: _transfer(r, f"--config.transfer.features=theirs:{r / 'f.npy'}"),
     ["no dataset named 'theirs'"]),
    ("transfer_features_rows",
     lambda t, r, w: _transfer(r, _rows(t, w)),
     ["tf.npy", "5 feature rows"]),
]  # fmt: skip

SYNTAX_ERROR = "def get_config(:\n"
RAISES = "def get_config():\n    1 / 0\n"
IMPORTS = "import no_such_x\n"
LATIN1 = b"def get_config():\n    return 'caf\xe9'\n"
RETURNS_DICT = "def get_config():\n    return {}\n"
BAD_TRIPLETS = b"0 1 2\n3 \xff 5\n"
BAD_IDS = b"a\n\xfe\n"
BAD_LABELS = b"\xff\xfe\x00"
BAD_TABLE = b"1 2\n\xff 1\n"
TYPO_CONFIG = """from alignment_jax.config.base import base_config


def get_config():
    config = base_config()
    config.probe.lamdas = (0.1,)
    return config
"""
SHORT_TSV = "Word\tuniqueID\nfirst\tobj_0\nsecond\n"


def _truncated(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    path.write_bytes(path.read_bytes()[:-17])
    return str(path)


def _npz_named_npy(path: Path, array: np.ndarray) -> str:
    with open(path, "wb") as f:
        np.savez(f, features=array)
    return str(path)


def _pickled(path: Path) -> str:
    np.save(path, np.array([{"x": 1}] * 3, dtype=object), allow_pickle=True)
    return str(path)


def _with_nan(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array[3, 2] = np.nan
    return array


@pytest.mark.parametrize("name, make_args, expected", CASES, ids=[c[0] for c in CASES])
def test_one_line_and_exit_2_and_earlier_outputs_untouched(name, make_args, expected, data, finished, tmp_path, capsys):
    root, world = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    before = snapshot(work)
    extra = make_args(tmp_path, root, world)
    args = extra if extra and extra[0].startswith("--config=") else base_args(root, *extra)  # another config
    status, _, err = run_cli(capsys, *args, f"--workdir={work}")
    assert_one_line(status, err, *expected)
    assert snapshot(work) == before


def test_at_least_sixty_cases():
    assert len(CASES) >= 60


# --- the workdir ---


def test_workdir_problems(data, tmp_path, capsys):
    root, _ = data
    (tmp_path / "file").write_text("x")
    status, _, err = run_cli(capsys, *base_args(root), f"--workdir={tmp_path / 'file'}")
    assert_one_line(status, err, f"--workdir={tmp_path / 'file'}", "is a file")
    status, _, err = run_cli(capsys, *base_args(root), f"--workdir={tmp_path / 'file' / 'below'}")
    assert_one_line(status, err, "is a file, so no folder can be made under it")
    for name in ("results.json", "transform.npz", "report.md"):
        work = tmp_path / f"with_{name}"
        (work / name).mkdir(parents=True)
        status, _, err = run_cli(capsys, *base_args(root), f"--workdir={work}")
        assert_one_line(status, err, str(work / name), "is a folder")
    work = tmp_path / "plots_file"
    work.mkdir()
    (work / "plots").write_text("")
    status, _, err = run_cli(capsys, *base_args(root), f"--workdir={work}")
    assert_one_line(status, err, str(work / "plots"), "is a file")
    status, _, err = run_cli(capsys, *base_args(root))
    assert_one_line(status, err, "--workdir=DIR is required")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_workdir(data, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "ro"
    work.mkdir()
    work.chmod(0o555)
    try:
        status, _, err = run_cli(capsys, *base_args(root), f"--workdir={work}")
    finally:
        work.chmod(0o755)
    assert_one_line(status, err, f"--workdir={work}", "cannot write")


def test_a_live_lock_is_refused_and_a_dead_one_taken_over(data, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "run"
    work.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": other.pid, "host": socket.gethostname(), "command": ["probe.py", "--config=x"]}
        (work / workdir.LOCK).write_text(json.dumps(holder))
        status, _, err = run_cli(capsys, *base_args(root, "--config.stages=zero_shot"), f"--workdir={work}")
        assert_one_line(status, err, f"pid {other.pid}", "another run is writing there")
    finally:
        other.kill()
        other.wait()
    # the same lock file now names a dead process: taken over, and released at the end
    status, out, err = run_cli(capsys, *base_args(root, "--config.stages=zero_shot"), f"--workdir={work}")
    assert status == 0, err
    assert not (work / workdir.LOCK).exists()


def test_garbage_results_json_is_moved_aside_and_the_run_goes_on(data, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "run"
    work.mkdir()
    (work / "results.json").write_text('{"zero_shot": {"accuracy": 0.9')
    status, out, err = run_cli(capsys, *base_args(root, "--config.stages=zero_shot"), f"--workdir={work}")
    assert status == 0, err
    (previous,) = (work / "previous").iterdir()
    assert (previous / "results.json").read_text() == '{"zero_shot": {"accuracy": 0.9'
    assert "not valid JSON" in (previous / "moved.txt").read_text() and "moved to" in out


# --- reruns: one run's outputs, never two mixed ---


def test_rerun_with_other_features_moves_everything_aside_before_writing(data, finished, tmp_path, capsys):
    root, world = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    old = json.loads((work / "results.json").read_text())
    old_transform = (work / "transform.npz").read_bytes()
    noisy = world.features + np.random.default_rng(0).normal(0, 1, world.features.shape).astype(np.float32)
    other = _npy(tmp_path / "other.npy", noisy)
    # the new zero-shot is written, then every probe configuration diverges
    status, out, err = run_cli(
        capsys, *base_args(root, f"--config.features={other}", "--config.probe.lrs=(1e9,)"), f"--workdir={work}"
    )
    assert status == 2 and "probe.lr" in err.strip().splitlines()[-1] and "Traceback" not in err
    results = json.loads((work / "results.json").read_text())
    assert "probe" not in results and not (work / "transform.npz").exists()  # nothing of the earlier run
    assert not (work / "transform_checkpoint").exists()
    assert results["provenance"]["zero_shot"]["features"] != old["provenance"]["zero_shot"]["features"]
    (previous,) = (work / "previous").iterdir()
    assert json.loads((previous / "results.json").read_text()) == old
    assert (previous / "transform.npz").read_bytes() == old_transform
    assert (previous / "transform_checkpoint").is_dir()
    assert "features" in (previous / "moved.txt").read_text() and "moved to" in out


def test_unchanged_rerun_keeps_everything_and_skips_finished_stages(data, finished, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    before = snapshot(work)
    status, out, err = run_cli(capsys, *base_args(root, "--config.stages="), f"--workdir={work}")  # every stage
    assert status == 0, err
    assert "zero_shot: inputs and settings unchanged; kept its finished result" in out
    assert "probe: inputs and settings unchanged; kept its finished result" in out
    assert not (work / "previous").exists() and (work / "report.md").exists()
    assert {k: v for k, v in snapshot(work).items() if k.startswith("transform")} == {
        k: v for k, v in before.items() if k.startswith("transform")
    }
    # the stage named in config.stages runs again, with other settings of another stage left as they are
    status, out, err = run_cli(capsys, *base_args(root, "--config.stages=zero_shot"), f"--workdir={work}")
    assert status == 0 and "zero-shot (cosine)" in out and not (work / "previous").exists()
    # another lambda: the earlier probe section and its transform are moved aside whole
    status, out, err = run_cli(
        capsys, *base_args(root, "--config.stages=probe", "--config.probe.lambdas=0.1"), f"--workdir={work}"
    )
    assert status == 0, err
    (previous,) = (work / "previous").iterdir()
    assert "config:probe.lambdas" in (previous / "moved.txt").read_text()
    assert set(json.loads((work / "results.json").read_text())) >= {"probe", "provenance"}
    assert "zero_shot" not in json.loads((work / "results.json").read_text())


@pytest.mark.parametrize("change", ["changed", "deleted"])
def test_a_changed_or_deleted_transform_makes_the_rerun_redo_the_probe(change, data, finished, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    recorded = json.loads((work / "results.json").read_text())["provenance"]["probe"]["output:transform.npz"]
    assert recorded == provenance.file_digest(work / "transform.npz")  # the probe's files=, recorded by the run
    if change == "changed":
        (work / "transform.npz").write_bytes(b"PK\x03\x04 not really a zip")
    else:
        (work / "transform.npz").unlink()
    status, out, err = run_cli(capsys, *base_args(root), f"--workdir={work}")
    assert status == 0, err
    assert "zero_shot: inputs and settings unchanged" in out and "probe: inputs and settings unchanged" not in out
    now = json.loads((work / "results.json").read_text())["provenance"]["probe"]["output:transform.npz"]
    assert now == provenance.file_digest(work / "transform.npz")


def test_transform_changed_after_the_probe_is_refused_where_it_would_be_used(data, finished, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    (work / "transform.npz").write_bytes(b"PK\x03\x04 not really a zip")
    before = snapshot(work)
    concepts = ["--config.stages=concepts", f"--config.concepts.embedding={root / 'embedding.npy'}"]
    status, _, err = run_cli(capsys, *base_args(root, *concepts), f"--workdir={work}")
    assert_one_line(status, err, str(work / "transform.npz"))
    assert snapshot(work) == before


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"garbage", "not a readable .npz transform"),
        ("nan", "NaN or inf in weights"),
        ("scalar", "weights must be square"),
    ],
)
def test_a_bad_transform_given_by_hand_is_one_line(content, expected, data, tmp_path, capsys):
    root, _ = data
    work = tmp_path / "run"
    work.mkdir()
    if content == "nan":
        np.savez(work / "transform.npz", weights=np.full((8, 8), np.nan), mean=0.0, std=1.0)
    elif content == "scalar":
        np.savez(work / "transform.npz", weights=np.float32(1.0), mean=0.0, std=1.0)
    else:
        (work / "transform.npz").write_bytes(content)
    transfer = [
        "--config.stages=transfer",
        f"--config.transfer.datasets=rsm:{root / 'transfer_rsm'}",
        f"--config.transfer.features=transfer_rsm:{root / 'transfer_features.npy'}",
    ]
    status, _, err = run_cli(capsys, *base_args(root, *transfer), f"--workdir={work}")
    assert_one_line(status, err, str(work / "transform.npz"), expected)


def test_temporary_files_of_a_killed_run_are_removed(data, finished, tmp_path, capsys):
    """What a kill leaves in any stage, the report's plots and orbax checkpoint included, is gone after the
    rerun."""
    root, _ = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    (work / "plots").mkdir(exist_ok=True)
    leftovers = [
        work / f".results.json.k1{atomic.TEMPORARY}",
        work / f".report.md.k2{atomic.TEMPORARY}",
        work / "plots" / f".accuracy.png.k3{atomic.TEMPORARY}.png",
        work / f".transform.npz.k4{atomic.TEMPORARY}.npz",
    ]
    for path in leftovers:
        path.write_bytes(b"half")
    (work / f".transform_checkpoint.k5{atomic.TEMPORARY}" / "new").mkdir(parents=True)
    status, out, err = run_cli(capsys, *base_args(root), f"--workdir={work}")
    assert status == 0, err
    assert temporary_files(work) == [] and "removed 5 temporary file(s)" in out


# --- nothing silently wrong ---


@pytest.mark.parametrize("scale", [1e30, 1e-30])
@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean"])
def test_accuracy_does_not_depend_on_the_scale_of_the_features(scale, similarity, data, tmp_path, capsys):
    root, world = data
    triplets = np.concatenate([world.train, world.repeats, world.test])
    x = world.features.astype(np.float64)
    if similarity == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T if similarity != "euclidean" else -((x[:, None] - x[None]) ** 2).sum(-1)
    i, j, k = triplets.T
    expected = np.mean((s[i, j] > s[i, k]) & (s[i, j] > s[j, k]))  # independent float64 computation
    scaled = _npy(tmp_path / "scaled.npy", (world.features * np.float32(scale)).astype(np.float32))
    args = base_args(
        root, f"--config.features={scaled}", "--config.stages=zero_shot", f"--config.similarity={similarity}"
    )
    status, _, err = run_cli(capsys, *args, f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    accuracy = json.loads((tmp_path / "run" / "results.json").read_text())["zero_shot"]["accuracy"]
    assert accuracy == pytest.approx(expected, abs=3e-3)


def test_rsa_does_not_depend_on_the_scale_of_the_features(data):
    _, world = data
    for kernel in ("cosine", "pearson"):
        reference = rsa.model_rsm(world.transfer_features, kernel)
        for scale in (1e30, 1e-30):
            np.testing.assert_allclose(
                rsa.model_rsm(world.transfer_features * np.float32(scale), kernel), reference, atol=1e-6
            )


def test_exploding_configurations_are_diverged_never_selected(data, tmp_path, capsys):
    root, _ = data
    args = base_args(root, "--config.stages=probe", "--config.probe.lrs=(0.05,1e9)", "--config.probe.clip_norm=0.0")
    status, out, err = run_cli(capsys, *args, f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    section = json.loads((tmp_path / "run" / "results.json").read_text())["probe"]
    statuses = {(round(r["lr"], 2), r["fold"]): r["status"] for r in section["sweep"]}
    assert statuses == {(0.05, 0): "ok", (0.05, 1): "ok", (1e9, 0): "diverged", (1e9, 1): "diverged"}
    assert section["best_lr"] == pytest.approx(0.05) and "2 configuration(s) diverged" in out
    exploded = [r["cross_entropy"] for r in section["sweep"] if r["status"] == "diverged"]
    assert all(ce is None or ce > 2 * np.log(3) for ce in exploded)
    status, _, err = run_cli(
        capsys,
        *base_args(root, "--config.stages=probe", "--config.probe.lrs=(1e9,)", "--config.probe.clip_norm=0.0"),
        f"--workdir={tmp_path / 'all'}",
    )
    assert status == 2 and "every probe configuration diverged" in err and "probe.lr" in err


def test_a_finite_but_exploded_cross_entropy_is_divergence():
    ce = np.array([[0.4, np.log(3.0), 2.1, 2.3, 1e20, np.nan]])
    no_local = np.full_like(ce, np.nan)
    outcome = SweepOutcome(
        {}, ce, np.zeros_like(ce), no_local, np.ones(ce.shape, int), np.ones(ce.shape, int), np.isnan(ce)
    )
    np.testing.assert_array_equal(diverged_configurations(outcome), [[False, False, False, True, True, True]])
    assert 2.1 < DIVERGED_CROSS_ENTROPY == 2 * np.log(3.0) < 2.3


def test_diverged_glocal_configurations_name_the_local_term():
    """When every gLocal configuration diverged, the message names tau and alpha beside the learning rate;
    a global probe's does not."""
    from alignment_jax.config.base import base_config
    from alignment_jax.probing.cross_validation import ProbeSettings, _best_setting

    ce = np.array([[np.nan, 3.0], [0.5, 0.5]])  # setting 0: global (alpha 0), fine; setting 1: gLocal, exploded
    outcome = SweepOutcome({}, ce, ce, ce, np.ones(ce.shape, int), np.ones(ce.shape, int), np.isnan(ce))
    config = base_config().probe
    config.objective = "glocal"
    settings = ProbeSettings.from_config(config).for_width(4)
    with pytest.raises(InputError, match=r"diverged.*lower the learning rate.*larger tau or a smaller alpha"):
        _best_setting(outcome, settings, "features", 1, np.array([False, True]), True)
    with pytest.raises(InputError, match=r"global probe configuration \(alpha = 0\) diverged") as raised:
        _best_setting(outcome, settings, "features", 1, np.array([True, False]), False)
    assert "tau" not in str(raised.value)


def test_one_based_unsigned_files_do_not_wrap(data, tmp_path, capsys):
    root, world = data
    train = np.concatenate([world.train, world.repeats])
    results = []
    for shift, flag in ((0, "False"), (1, "True")):
        files = [
            _npy(tmp_path / f"{split}{shift}.npy", (t + shift).astype(np.uint8))
            for split, t in (("train", train), ("test", world.test))
        ]
        args = base_args(
            root,
            "--config.stages=zero_shot",
            f"--config.things.train={files[0]}",
            f"--config.things.test={files[1]}",
            f"--config.things.one_based={flag}",
        )
        work = tmp_path / f"run_{flag}"
        status, _, err = run_cli(capsys, *args, f"--workdir={work}")
        assert status == 0, err
        results.append(json.loads((work / "results.json").read_text())["zero_shot"]["accuracy"])
    assert results[0] == results[1]


def test_duplicates_and_train_test_overlap_are_counted(data, tmp_path, capsys):
    root, world = data
    train = np.concatenate([world.train[:500], world.train[:7], world.train[100:103][:, [1, 0, 2]]])
    test = np.concatenate([world.test[:200], world.train[10:15][:, [2, 1, 0]], world.test[:2]])
    train_path, test_path = _npy(tmp_path / "train.npy", train), _npy(tmp_path / "test.npy", test)
    args = base_args(
        root, "--config.stages=zero_shot", f"--config.things.train={train_path}", f"--config.things.test={test_path}"
    )
    status, out, err = run_cli(capsys, *args, f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    section = json.loads((tmp_path / "run" / "results.json").read_text())["data"]
    expected_duplicates = len(train) - len({tuple(t) for t in train.tolist()})
    train_sets = {frozenset(t) for t in train.tolist()}
    expected_overlap = sum(frozenset(t) in train_sets for t in test.tolist())
    assert section["train_duplicates"] == expected_duplicates >= 7
    assert section["test_duplicates"] == len(test) - len({tuple(t) for t in test.tolist()}) >= 2
    assert section["train_test_overlap"] == expected_overlap >= 5
    assert f"warning: {expected_overlap} of {len(test)} test triplets have the same three objects" in out


def test_results_json_is_strict_without_bootstrap_and_without_a_test_split(data, tmp_path, capsys):
    root, world = data
    test = _npy(tmp_path / "empty.npy", np.zeros((0, 3), np.int64))
    args = base_args(root, "--config.stages=zero_shot", f"--config.things.test={test}")
    status, _, err = run_cli(capsys, *args, f"--workdir={tmp_path / 'run'}")
    assert status == 0, err
    text = (tmp_path / "run" / "results.json").read_text()
    section = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in results.json"))["zero_shot"]
    assert section["ci95"] == [None, None] and section["test_accuracy"] is None


def test_a_checkpoint_with_nan_parameters_is_refused(tmp_path, capsys):
    model = load_model("demo-vit")
    flat = checkpoints.flatten({k: np.asarray(v) for k, v in checkpoints.flatten(model.params).items()})
    name = "Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel"
    flat[name] = flat[name].copy()
    flat[name][0, 0] = np.inf
    checkpoints.save_big_vision_npz(str(tmp_path / "nan.npz"), checkpoints.unflatten(flat))
    args = [f"--config={DEMO_CONFIG}", *SMALL_WORLD, f"--config.model.checkpoint={tmp_path / 'nan.npz'}"]
    status, _, err = run_cli(capsys, *args, f"--workdir={tmp_path / 'run'}")
    assert_one_line(status, err, str(tmp_path / "nan.npz"), name, "NaN or inf")
    status, _, err = run_cli(
        capsys, *args[:-1], f"--config.model.checkpoint={tmp_path / 'none.npz'}", f"--workdir={tmp_path / 'run'}"
    )
    assert_one_line(status, err, str(tmp_path / "none.npz"), "checkpoint not found")


def test_damaged_feature_store_files_are_computed_again(tmp_path, capsys):
    args = [f"--config={DEMO_CONFIG}", *SMALL_WORLD, "--config.stages=world,extract", "--config.images.shard_size=10"]
    work = tmp_path / "run"
    assert run_cli(capsys, *args, f"--workdir={work}")[0] == 0
    (store,) = (work / "features").iterdir()
    good = np.load(store / "features.npy")
    (store / "features.npy").write_bytes((store / "features.npy").read_bytes()[:-40])  # truncated copy
    status, out, err = run_cli(capsys, *args, f"--workdir={work}")
    assert status == 0, err
    assert "computing the features again" in out
    np.testing.assert_allclose(np.load(store / "features.npy"), good, rtol=1e-5, atol=1e-6)
    # an unfinished store with a truncated shard: that shard is computed again, the others are reused
    record = json.loads((store / "record.json").read_text())
    (store / "record.json").write_text(json.dumps({**record, "complete": False}))
    (store / "shards").mkdir(exist_ok=True)
    np.save(store / "shards" / "00000.npy", good[:10])
    np.save(store / "shards" / "00001.npy", good[10:20])
    (store / "shards" / "00001.npy").write_bytes((store / "shards" / "00001.npy").read_bytes()[:-5])
    status, out, err = run_cli(capsys, *args, f"--workdir={work}")
    assert status == 0, err
    assert json.loads((work / "results.json").read_text())["extract"]["computed"] == len(good) - 10
    np.testing.assert_allclose(np.load(store / "features.npy"), good, rtol=1e-5, atol=1e-6)


def test_too_big_an_extraction_batch_is_lowered_to_fit(tmp_path, capsys):
    args = [f"--config={DEMO_CONFIG}", *SMALL_WORLD, "--config.stages=world,extract"]
    status, out, err = run_cli(
        capsys, *args, "--config.images.batch_size=1000000000000", f"--workdir={tmp_path / 'run'}"
    )
    assert status == 0, err
    assert json.loads((tmp_path / "run" / "results.json").read_text())["extract"]["n"] == 24
    per_image, params, free = 1e6, 1e8, 1e9  # bytes: 800 images of the budget fit beside the parameters
    batch, note = memory.fit_batch(4096, per_image, params, 2, free, "m")
    assert batch == 1024 and params + batch / 2 * per_image <= memory.USABLE * free
    assert "images.batch_size=4096" in note and "batches of 1024" in note
    assert memory.fit_batch(64, per_image, params, 1, free, "m") == (64, "")
    with pytest.raises(InputError, match="model m: needs about .* for its parameters and one image"):
        memory.fit_batch(64, per_image, 2e9, 1, free, "m")


# --- failures that are not the user's ---


def test_out_of_memory_names_the_setting(data, tmp_path, capsys, monkeypatch):
    import jax

    from alignment_jax.stages import probe as probe_stage

    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.2GiB.")

    monkeypatch.setattr(probe_stage, "run_probe", exhausted)
    root, _ = data
    status, _, err = run_cli(capsys, *base_args(root, "--config.stages=probe"), f"--workdir={tmp_path / 'run'}")
    assert_one_line(status, err, "probe: out of memory", "RESOURCE_EXHAUSTED", "probe.lambdas")


def test_out_of_host_memory_after_the_outputs_moved_aside(data, finished, tmp_path, capsys):
    """Another bootstrap: the earlier outputs (of another setting) go aside whole, then numpy cannot
    allocate the resamples: one line naming the setting."""
    root, _ = data
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    before = snapshot(work)
    args = base_args(root, "--config.stages=zero_shot", "--config.zero_shot.bootstrap=1000000000000")
    status, _, err = run_cli(capsys, *args, f"--workdir={work}")
    assert_one_line(status, err, "zero_shot: out of memory", "zero_shot.bootstrap")
    (previous,) = (work / "previous").iterdir()
    assert snapshot(previous).keys() - {"moved.txt"} == before.keys()


def test_an_internal_error_is_one_line_asking_to_report_it_with_error_log(data, tmp_path, capsys, monkeypatch):
    from alignment_jax.stages import zero_shot

    def bug(ctx):
        raise KeyError("a bug")

    monkeypatch.setattr(zero_shot, "run", bug)
    root, _ = data
    work = tmp_path / "run"
    status, _, err = run_cli(capsys, *base_args(root, "--config.stages=zero_shot"), f"--workdir={work}")
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and "Traceback" not in err
    assert (
        "internal error (KeyError" in lines[0]
        and "please report it" in lines[0]
        and str(work / "error.log") in lines[0]
    )
    assert "raise KeyError" in (work / "error.log").read_text()
    assert not (work / workdir.LOCK).exists()


def test_sweep_config_that_fails_to_load_is_one_line(tmp_path, capsys):
    bad = _write(tmp_path / "bad.py", "def get_config(:\n")
    sweep_args = [
        "--config=" + str(REPO / "configs" / "sweep.py"),
        f"--config.models={bad}",
        f"--workdir={tmp_path / 's'}",
    ]
    status = cli.main(sweep._command, ["sweep.py", *sweep_args])
    _, err = capsys.readouterr()
    assert status == 1 and "Traceback" not in err
    assert "bad.py: the config file failed to load (SyntaxError" in err
    status = cli.main(sweep._command, ["sweep.py", *sweep_args[:2], "extra", f"--workdir={tmp_path / 's'}"])
    assert_one_line(status, capsys.readouterr()[1], "unexpected argument(s) ['extra']")


# --- what only a real process shows ---


def _start(work: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "alignment_jax.probe", f"--config={DEMO_CONFIG}:features=True", *SMALL_WORLD]
    command += [
        "--config.probe.lambdas=(0.1,0.01,0.001)",
        "--config.probe.epochs=400000",  # about a minute: longer than the second run takes to be refused
        "--config.probe.patience=400000",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [*command, *extra, f"--workdir={work}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 120) -> None:
    """Reads the process's stdout until a line holds `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before {text!r}: {process.stderr.read()[-2000:]}")
    raise AssertionError(f"no {text!r} within {timeout} s")


def test_ctrl_c_is_one_line_and_exit_130_and_a_second_run_is_refused_meanwhile(tmp_path):
    work = tmp_path / "run"
    first = _start(work)
    try:
        _wait_for(first, "zero-shot")  # the probe is training now, with the lock held
        second = subprocess.run(
            [sys.executable, "-m", "alignment_jax.probe", f"--config={DEMO_CONFIG}:features=True", f"--workdir={work}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert second.returncode == 2 and second.stderr.strip().splitlines() == [second.stderr.strip()]
        assert f"pid {first.pid} on host" in second.stderr and "another run is writing there" in second.stderr
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "interrupted; rerun to resume" and "Traceback" not in err
    assert not (work / workdir.LOCK).exists() and temporary_files(work) == []


def test_sigkill_at_any_moment_leaves_nothing_after_the_rerun(tmp_path, capsys):
    work = tmp_path / "run"
    first = _start(work, "--config.probe.lambdas=(0.1,)", "--config.probe.epochs=30", "--config.report.plots=False")
    try:
        _wait_for(first, "zero-shot")
        time.sleep(1.0)
    finally:
        first.kill()
        first.communicate()
    extra = [*SMALL_WORLD, "--config.probe.lambdas=(0.1,)", "--config.probe.epochs=30", "--config.report.plots=False"]
    status, _, err = run_cli(capsys, f"--config={DEMO_CONFIG}:features=True", *extra, f"--workdir={work}")
    assert status == 0, err
    assert temporary_files(work) == [] and not (work / workdir.LOCK).exists()
    assert {"zero_shot", "probe", "transfer", "concepts", "report"} <= set(
        json.loads((work / "results.json").read_text())
    )
