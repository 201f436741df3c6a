"""AligNet's loop in one run on a small demo world: probe (teacher) -> teacher triplets over the world's
unlabeled pool -> student (KL on those triplets alone) -> scored on the human test triplets."""

import json

import numpy as np
import pytest

from alignment_jax import probe
from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError


def small_loop_config():
    config = base_config()
    config.progress = "off"
    config.world.enabled = True
    config.world.n_objects, config.world.n_dims, config.world.n_concepts = 80, 16, 5
    config.world.n_train, config.world.n_test, config.world.n_repeated_sets = 8000, 2000, 50
    config.world.n_transfer, config.world.n_local = 10, 400
    config.stages = "world,zero_shot,probe,teacher,student,report"
    config.zero_shot.bootstrap = 0
    config.probe.lambdas, config.probe.epochs = (1e-3,), 60
    config.teacher.n_triplets, config.teacher.shard_size = 8000, 3000
    config.teacher.classes, config.teacher.n_clusters, config.teacher.similarity = "kmeans", 6, "dot"
    config.student.objective, config.student.taus = "kl", (1.0,)
    return config


def test_student_learns_the_teacher_from_its_pool_triplets(tmp_path):
    probe.run(small_loop_config(), str(tmp_path / "run"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    student, teacher = results["student"], results["teacher"]
    assert teacher["n_images"] == 400 and teacher["n_shards"] == 3 and teacher["classes"] == "kmeans"
    assert student["n_triplets"] == 8000 and student["objective"] == "kl"
    assert student["teacher_test_accuracy"] == results["probe"]["test_accuracy"]
    assert student["zero_shot_test_accuracy"] == results["zero_shot"]["test_accuracy"]
    assert student["test_accuracy"] > student["zero_shot_test_accuracy"] + 0.1  # it learned the alignment
    assert student["test_accuracy"] > student["teacher_test_accuracy"] - 0.05  # about as well as its teacher
    assert "AligNet: student trained on teacher triplets alone" in (tmp_path / "run" / "report.md").read_text()
    assert np.load(tmp_path / "run" / "teacher" / "classes.npy").max() == 5


def test_features_alone_need_kmeans_classes(tmp_path):
    config = base_config()
    config.stages = "teacher"
    config.teacher.features, config.teacher.n_triplets = str(tmp_path / "f.npy"), 10
    with pytest.raises(InputError, match="teacher.features without teacher.images has no class labels"):
        probe.run(config, str(tmp_path / "run"))
