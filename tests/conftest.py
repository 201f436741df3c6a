"""Shared fixtures: a small planted world written to disk in the THINGS layout; and, after the session, a check
that every results.json the tests wrote is strict JSON."""

import json
import os

import numpy as np
import pytest

from alignment_jax.data.synthetic import make_world


@pytest.fixture(scope="session", autouse=True)
def package_cache(tmp_path_factory):
    """The package cache folder (decoded images, compiled programs) of this test session, not the user's:
    $ALIGNMENT_JAX_CACHE, inherited by the command-line runs the tests start."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("package_cache")
        patch.setenv("ALIGNMENT_JAX_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def world():
    return make_world(n_objects=120, n_concepts=6, n_dims=24, n_train=20_000, n_test=4_000, seed=0)


@pytest.fixture(scope="session")
def things_dir(world, tmp_path_factory):
    """ROOT/triplets/{train_90,test_10}.npy, ROOT/things_concepts.tsv and ROOT/features.npy."""
    root = tmp_path_factory.mktemp("things")
    os.makedirs(root / "triplets")
    np.save(root / "triplets" / "train_90.npy", np.concatenate([world.train, world.repeats]))
    np.save(root / "triplets" / "test_10.npy", world.test)
    rows = ["Word\tuniqueID"] + [f"object {i}\tobject_{i:04d}" for i in range(len(world.features))]
    (root / "things_concepts.tsv").write_text("\n".join(rows) + "\n")
    np.save(root / "features.npy", world.features)
    return root


def _refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


@pytest.fixture(scope="session", autouse=True)
def every_results_json_is_strict(tmp_path_factory):
    """After the session: every JSON file the tests' runs wrote under the temporary folders (results.json,
    DONE, feature store records) parses with a strict parser (no bare NaN or Infinity). A file that is not
    JSON even to a lenient parser is a test's own garbage and is skipped."""
    yield
    bad = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.name not in ("results.json", "DONE", "record.json") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            json.loads(text)
        except ValueError:
            continue
        try:
            json.loads(text, parse_constant=_refuse)
        except ValueError as e:
            bad.append(f"{path}: {e}")
    assert not bad, "not strict JSON:\n" + "\n".join(bad)


# The fast subset (`pytest tests -m "not slow"`, under 3 minutes on 2 cores) leaves out whole runs, notebooks,
# subprocesses, comparisons with transformers' models and sweeps to convergence: these files, and these
# tests of other files (each took seconds or more).
SLOW_FILES = {
    "test_caches.py", "test_cli_processes.py", "test_comparisons.py", "test_demo.py", "test_extract_processes.py",
    "test_fast_equivalence.py", "test_glocal.py", "test_memory.py", "test_notebooks.py", "test_precision.py",
    "test_sweep_cli.py", "test_sweep_processes.py",
}  # fmt: skip
SLOW_TESTS = {
    "test_alignet_loop.py": ("test_student_learns_the_teacher_from_its_pool_triplets",),
    "test_alignet_probe.py": ("test_probe_trains_on_alignet_without_things",),
    "test_api.py": (
        "test_get_config_and_run",
        "test_fit_probe_learns_and_its_transform_round_trips",
        "test_fit_probe_learns_soft_targets_as_the_probe_stage_does",
    ),
    "test_bad_inputs.py": (
        "test_ctrl_c_is_one_line_and_exit_130_and_a_second_run_is_refused_meanwhile",
        "test_exploding_configurations_are_diverged_never_selected",
        "test_sigkill_at_any_moment_leaves_nothing_after_the_rerun",
        "test_unchanged_rerun_keeps_everything_and_skips_finished_stages",
    ),
    "test_checkpoints.py": ("test_orbax_restores_onto_two_devices", "test_orbax_round_trip_onto_a_sharding"),
    "test_cli.py": (
        "test_end_to_end",
        "test_diverged_configurations_are_reported_and_left_out",
        "test_bad_config_flags_are_one_line",
        "test_a_run_failing_before_its_first_stage_leaves_no_workdir",
        "test_every_bad_input_is_one_line_and_exit_2",
        "test_real_config_without_data_says_what_to_download",
    ),
    "test_cross_validation.py": (
        "test_a_layer_inside_a_multi_layer_probe_equals_its_probe_alone",
        "test_fast_protocol_reaches_the_paper_protocol",
        "test_paper_protocol_runs_minibatches",
        "test_probe_closes_most_of_the_gap_to_the_generating_model",
        "test_triplet_split_cross_validates_over_triplets",
    ),
    "test_dinov2.py": ("test_hf_layout_matches_transformers",),
    "test_extract_stage.py": ("test_model_and_things_images_run_extract_then_zero_shot_and_reuse",),
    "test_given_transform.py": ("test_a_given_transform_is_evaluated_everywhere_and_the_probe_skipped",),
    "test_levels_stage.py": (
        "test_the_same_runs_probe_transform_is_evaluated",
        "test_every_layer_of_model_layers_is_evaluated_on_levels",
    ),
    "test_local.py": ("test_vmap_over_configurations_equals_one_by_one",),
    "test_soft_objectives.py": ("test_probe_selects_tau_and_scores_the_test_file",),
    "test_teacher_tfds.py": ("test_command_line_runs_the_teacher_alone_and_refuses_a_missing_split",),
    "test_sweep.py": (
        "test_views_train_as_if_each_were_swept_alone",
        "test_vmapped_sweep_equals_configurations_run_one_by_one",
        "test_epoch_budget_per_configuration",
    ),
}


def pytest_collection_modifyitems(items):
    for item in items:
        file = item.path.name
        if file in SLOW_FILES or item.originalname in SLOW_TESTS.get(file, ()):
            item.add_marker(pytest.mark.slow)
