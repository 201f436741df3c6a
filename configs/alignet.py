"""AligNet (Muttenthaler et al., Nature 2025; google-deepmind/alignet) with this package: a teacher labels
ImageNet triplets with soft similarities, and a student probe learns from them with a KL divergence.

Step 1, the teacher (THINGS-aligned transform of a model, then 10M triplets over ImageNet's train set):

    python -m alignment_jax.probe --config=configs/alignet.py:step=teacher --workdir=runs/teacher \
        --config.things.root=/data/THINGS --config.teacher.images=/data/imagenet/train

  ImageNet's train folder: one subfolder per class (n01440764/n01440764_10026.JPEG, ...); 1.28M images,
  rows in sorted file-name order. Classes: teacher.classes=kmeans (AligNet's 500 clusters of the teacher's
  features) or labels (the subfolders). Output: runs/teacher/teacher/triplets-*.npz + manifest.json, the
  format of AligNet's alignet_train.npz (filenames, similarities, indices = the image's row, sampling).

Step 2, the student (a probe on any model's features of the same images, trained on the teacher's triplets or
on AligNet's released files; no THINGS needed):

    python -m alignment_jax.probe --config=configs/alignet.py:step=student --workdir=runs/student \
        --config.alignet.train=/data/alignet/alignet_train.npz \
        --config.alignet.test=/data/alignet/alignet_valid.npz \
        --config.alignet.images=/data/imagenet/train

  (or alignet.features=FILE.npy: one row per distinct file name of train + test, sorted). The teacher's
  shards merge into one file with alignment_jax.data.teacher.merge_shards(folder, path).
Model: model.name (ViT-B/16 AugReg by default; any registry entry).
Argument runlocal: the whole loop on the demo world in one run, whatever the step: the model's tiny stand-in
extracts the world's images and an unlabeled pool of further rendered objects; the probe (teacher) labels
20k triplets over the pool (10 k-means classes) and a KL student trained on them alone is scored beside it.
"""

from alignment_jax.config.args import parse_arg, run_locally
from alignment_jax.config.base import base_config
from alignment_jax.errors import InputError


def get_config(arg: str = ""):
    args = parse_arg(arg, step="teacher", runlocal=False)
    config = base_config()
    config.model.name = "augreg-b16-i21k-ft-i1k"
    config.images.batch_size = 256
    if args.step not in ("teacher", "student"):
        raise InputError(f"configs/alignet.py: step={args.step!r} is not one of teacher, student")
    if args.runlocal:  # every stage whose inputs are set: world, extract, zero_shot, probe, teacher, student, report
        config = run_locally(config)
        config.world.n_local = 300  # the unlabeled pool
        config.teacher.n_triplets, config.teacher.shard_size = 20_000, 10_000
        config.teacher.classes, config.teacher.n_clusters, config.teacher.similarity = "kmeans", 10, "dot"
        config.student.objective, config.student.taus = "kl", (1.0,)
        return config
    if args.step == "teacher":
        config.stages = "extract,zero_shot,probe,teacher"
        config.teacher.n_triplets = 10_000_000  # AligNet's alignet_train.npz
        config.teacher.classes = "kmeans"
        config.teacher.n_clusters = 500  # AligNet's k
        config.teacher.similarity = "dot"  # the probe's similarity: its triplet logits
        config.teacher.shard_size = 1_000_000
    else:
        config.stages = "probe"
        config.probe.objective = "kl"  # AligNet's; jsd: the Jensen-Shannon divergence
        config.probe.taus = (0.25, 0.5, 1.0, 2.0)  # the prediction's temperature, swept with lambda
        config.probe.split = "triplets"
        config.probe.protocol = "paper"  # minibatches: 10M triplets do not fit one full batch
        config.probe.batch_size = 65_536
    return config
