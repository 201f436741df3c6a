"""The human noise ceiling: hand-computed sets, its interval over sets, the rule for repeats found in the
data, and the zero_shot stage with and without a dedicated noise-ceiling file."""

import json
from collections import Counter

import numpy as np
import pytest

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError
from alignment_jax.evaluation.noise_ceiling import ceiling_summary, noise_ceiling, repeated_sets, sets_bootstrap_ci

# Three sets asked repeatedly, in shuffled orders (the odd one out stays in column 2), and two asked once.
PLANTED = np.array(
    [
        [0, 1, 2], [1, 0, 2], [0, 1, 2], [2, 0, 1],  # {0,1,2}: odd ones 2, 2, 2, 1 -> majority 3 of 4
        [3, 4, 5], [5, 4, 3], [5, 3, 4],  # {3,4,5}: 5, 3, 4 -> 1 of 3
        [7, 6, 8], [6, 7, 8],  # {6,7,8}: 8, 8 -> 2 of 2
        [0, 4, 8], [1, 5, 9],  # asked once: not part of the ceiling
    ]
)  # fmt: skip


def majority_by_hand(triplets: np.ndarray) -> tuple[float, int, int]:
    """An independent plain-Python ceiling: (sum of majority counts / responses, sets, responses)."""
    answers: dict[frozenset, list[int]] = {}
    for row in triplets.tolist():
        answers.setdefault(frozenset(row), []).append(row[2])
    repeated = [a for a in answers.values() if len(a) >= 2]
    majority = sum(Counter(a).most_common(1)[0][1] for a in repeated)
    responses = sum(len(a) for a in repeated)
    return majority / responses, len(repeated), responses


def test_planted_sets_by_hand_with_their_interval():
    ceiling = noise_ceiling(PLANTED, 10, bootstrap=20_000, seed=0)
    assert ceiling.accuracy == pytest.approx((3 + 1 + 2) / (4 + 3 + 2))
    assert (ceiling.n_repeated_sets, ceiling.n_responses) == (3, 9)
    # Resampling the 3 sets gives 27 equally likely draws; the lowest ratio, {3,4,5} three times (1/3), and the
    # highest, {6,7,8} three times (2/2), each have probability 1/27 > 2.5%: they are the interval's ends.
    assert ceiling.ci95 == (pytest.approx(1 / 3), pytest.approx(1.0))
    responses, majority = repeated_sets(PLANTED, 10)
    assert sorted(zip(responses.tolist(), majority.tolist(), strict=True)) == [(2, 2), (3, 1), (4, 3)]


def test_ceiling_of_many_sets_agrees_with_an_independent_computation_and_a_normal_interval():
    rng = np.random.default_rng(0)
    n_sets, n_objects = 400, 50
    sets = np.array([rng.choice(n_objects, 3, replace=False) for _ in range(n_sets)])
    asked = rng.integers(2, 12, n_sets)
    rows = []
    for s, times in zip(sets, asked, strict=True):
        favourite = rng.integers(3)
        for _ in range(times):
            odd = favourite if rng.random() < 0.6 else rng.integers(3)
            rows.append(np.roll(s, 2 - odd) if rng.random() < 0.5 else np.roll(s, 2 - odd)[[1, 0, 2]])
    triplets = np.array(rows)
    ceiling = noise_ceiling(triplets, n_objects, bootstrap=2000, seed=1)
    accuracy, found, responses = majority_by_hand(triplets)
    assert ceiling.accuracy == pytest.approx(accuracy, abs=1e-12)
    assert (ceiling.n_repeated_sets, ceiling.n_responses) == (found, responses)
    # the ratio estimator's delta-method standard error over sets
    responses_per_set, majority = repeated_sets(triplets, n_objects)
    residual = majority - accuracy * responses_per_set
    se = np.sqrt(np.sum(residual**2)) / responses_per_set.sum()
    low, high = ceiling.ci95
    assert low < accuracy < high
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_sets_bootstrap_degenerate_cases():
    assert np.isnan(sets_bootstrap_ci(np.array([]), np.array([]), 100)).all()
    assert np.isnan(sets_bootstrap_ci(np.array([3]), np.array([2]), 0)).all()
    assert sets_bootstrap_ci(np.array([4, 2, 6]), np.array([2, 1, 3]), 100) == (0.5, 0.5)  # every set at 1/2
    assert np.isnan(noise_ceiling(PLANTED[-2:], 10).accuracy)


def test_repeats_in_the_data_need_enough_sets():
    entry, line = ceiling_summary(PLANTED, 10, "the train triplets", dedicated=False, min_sets=30)
    assert entry["accuracy"] is None and entry["ci95"] == [None, None]
    assert (entry["n_sets"], entry["n_responses"]) == (3, 9)
    assert line == entry["note"] and "\n" not in line
    assert line.startswith("no noise ceiling: 3 set(s) of three objects asked twice or more in the train triplets")
    assert "fewer than 30 (things.noise_ceiling_min_sets)" in line and "things.noise_ceiling_triplets=FILE" in line
    entry, line = ceiling_summary(PLANTED, 10, "the train triplets", dedicated=False, min_sets=3, bootstrap=100)
    assert entry["accuracy"] == pytest.approx(6 / 9) and None not in entry["ci95"] and "note" not in entry
    assert line.startswith("noise ceiling: 0.667 [") and "(3 sets, 9 responses, 3.0 per set)" in line
    # a dedicated file is used whatever its number of sets, but must repeat something
    entry, _ = ceiling_summary(PLANTED, 10, "nc.npy", dedicated=True, min_sets=30)
    assert entry["accuracy"] == pytest.approx(6 / 9) and entry["source"] == "nc.npy"
    with pytest.raises(InputError, match="nc.npy: no set of three objects is asked twice"):
        ceiling_summary(PLANTED[-2:], 10, "nc.npy", dedicated=True, min_sets=30)


def zero_shot_config(things_dir, **things):
    config = base_config()
    config.features = str(things_dir / "features.npy")
    config.things.root = str(things_dir)
    config.stages = "zero_shot"
    config.zero_shot.bootstrap = 200
    config.things.update(things)
    return config


def test_zero_shot_stage_with_a_noise_ceiling_file(things_dir, world, tmp_path, capsys):
    path = tmp_path / "noise_ceiling.txt"  # the text format of triplet files
    np.savetxt(path, world.repeats, fmt="%d")
    probe.run(zero_shot_config(things_dir, noise_ceiling_triplets=str(path)), str(tmp_path / "run"))
    entry = json.loads((tmp_path / "run" / "results.json").read_text())["zero_shot"]["noise_ceiling"]
    accuracy, n_sets, n_responses = majority_by_hand(world.repeats)
    assert entry["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert (entry["source"], entry["n_sets"], entry["n_responses"]) == (str(path), n_sets, n_responses)
    assert entry["ci95"][0] < accuracy < entry["ci95"][1]
    assert f"noise ceiling: {accuracy:.3f} [" in capsys.readouterr().out


def test_zero_shot_stage_without_enough_repeats_says_why(things_dir, tmp_path, capsys):
    probe.run(zero_shot_config(things_dir, noise_ceiling_min_sets=100_000), str(tmp_path / "run"))
    entry = json.loads((tmp_path / "run" / "results.json").read_text())["zero_shot"]["noise_ceiling"]
    assert entry["accuracy"] is None and entry["source"] == "the train and test triplets"
    assert entry["n_sets"] >= 300  # the planted repeats, and chance repeats of 24,000 triplets over 120 objects
    assert "fewer than 100000" in entry["note"]
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "noise ceiling" in line]
    assert line == entry["note"]


@pytest.mark.parametrize(
    "things, message",
    [
        ({"noise_ceiling_triplets": "/no/such/file.npy"}, "/no/such/file.npy: noise-ceiling triplet file not found"),
        ({"noise_ceiling_min_sets": 0}, "things.noise_ceiling_min_sets=0: must be a whole number >= 1"),
    ],
)
def test_bad_noise_ceiling_settings_fail_before_any_stage(things_dir, tmp_path, things, message):
    with pytest.raises(InputError, match=message):
        probe.run(zero_shot_config(things_dir, **things), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "results.json").exists()  # nothing written (the workdir may be made)
