"""Loaders of the transfer datasets, on files written here in each published layout, and their errors."""

import numpy as np
import pytest
from scipy import io
from scipy.spatial import distance

from alignment_jax.data import rsm_datasets as rd
from alignment_jax.errors import InputError


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def _symmetric(rng, n):
    m = rng.random((n, n))
    return m + m.T


def _peterson(root, category, matrix, images=("img2.jpg", "img1.png", "img10.jpg"), mat_name="animals_simMat.mat"):
    _images(root / category / "images", images)
    (root / category / "images" / "notes.txt").write_text("not an image")
    (root / category / "sim_judgements").mkdir(parents=True, exist_ok=True)
    io.savemat(root / category / "sim_judgements" / mat_name, {"simMatrix": matrix})


def test_peterson_layout(tmp_path):
    rng = np.random.default_rng(0)
    sims = {c: _symmetric(rng, 3) for c in ("animals", "fruits")}
    for category, matrix in sims.items():
        _peterson(tmp_path, category, matrix)
    (dataset,) = rd.load_dataset("peterson_fruits", str(tmp_path))
    assert dataset.name == "peterson_fruits" and dataset.kind == "similarity"
    np.testing.assert_array_equal(dataset.matrix, sims["fruits"])
    np.testing.assert_array_equal(dataset.similarity, sims["fruits"])
    assert [s.rsplit("/", 1)[1] for s in dataset.stimuli] == ["img1.png", "img10.jpg", "img2.jpg"]
    assert [d.name for d in rd.load_dataset("peterson", str(tmp_path))] == ["peterson_animals", "peterson_fruits"]


def test_peterson_errors(tmp_path):
    rng = np.random.default_rng(1)
    with pytest.raises(InputError, match="folder not found"):
        rd.load_peterson(str(tmp_path / "absent"), "animals")
    with pytest.raises(InputError, match="unknown category 'birds'"):
        rd.load_peterson(str(tmp_path), "birds")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(InputError, match="no Peterson category folder"):
        rd.load_dataset("peterson", str(tmp_path / "empty"))
    _peterson(tmp_path, "animals", _symmetric(rng, 4))
    with pytest.raises(InputError, match="4 stimuli in the human matrix but 3 images"):
        rd.load_peterson(str(tmp_path), "animals")
    io.savemat(tmp_path / "animals" / "sim_judgements" / "other_sim.mat", {"sim": _symmetric(rng, 3)})
    with pytest.raises(InputError, match="expected one .mat file with 'sim'"):
        rd.load_peterson(str(tmp_path), "animals")
    _peterson(tmp_path, "various", _symmetric(rng, 3), mat_name="rsm.mat")
    with pytest.raises(InputError, match=r"expected one \.mat file .*found \['rsm.mat'\]"):
        rd.load_peterson(str(tmp_path), "various")
    (tmp_path / "fruits" / "sim_judgements").mkdir(parents=True)
    io.savemat(tmp_path / "fruits" / "sim_judgements" / "sim.mat", {"ratings": _symmetric(rng, 3)})
    with pytest.raises(InputError, match=r"one variable with 'sim' in its name, found \['ratings'\]"):
        rd.load_peterson(str(tmp_path), "fruits")
    (tmp_path / "furniture" / "sim_judgements").mkdir(parents=True)
    (tmp_path / "furniture" / "sim_judgements" / "sim.mat").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="not a readable .mat file"):
        rd.load_peterson(str(tmp_path), "furniture")


def _cichy(root, judgments, n_images):
    _images(root / "images", [f"{i:03d}.jpg" for i in range(n_images)])
    (root / "sim_judgements").mkdir(parents=True, exist_ok=True)
    io.savemat(root / "sim_judgements" / "judgments_general.mat", {"judgments": judgments})


def test_cichy_layout_averages_participants(tmp_path):
    judgments = np.random.default_rng(2).random((5, 6, 6))
    _cichy(tmp_path, judgments, 6)
    (dataset,) = rd.load_dataset("cichy", str(tmp_path))
    assert dataset.name == "cichy" and dataset.kind == "dissimilarity" and dataset.n_stimuli == 6
    np.testing.assert_allclose(dataset.matrix, judgments.mean(axis=0))
    np.testing.assert_allclose(dataset.similarity, -judgments.mean(axis=0))


def test_cichy_errors(tmp_path):
    rng = np.random.default_rng(3)
    tmp_path.joinpath("a").mkdir()
    with pytest.raises(InputError, match="judgments_general.mat: file not found"):
        rd.load_cichy(str(tmp_path / "a"))
    (tmp_path / "b" / "sim_judgements").mkdir(parents=True)
    io.savemat(tmp_path / "b" / "sim_judgements" / "judgments_general.mat", {"rdm": rng.random((2, 4, 4))})
    with pytest.raises(InputError, match=r"no variable 'judgments' \(found \['rdm'\]\)"):
        rd.load_cichy(str(tmp_path / "b"))
    _cichy(tmp_path / "c", rng.random((2, 4, 5)), 4)
    with pytest.raises(InputError, match=r"judgments must have shape \(participants, n, n\)"):
        rd.load_cichy(str(tmp_path / "c"))
    bad = rng.random((2, 4, 4))
    bad[:, 1, 3] = np.nan
    _cichy(tmp_path / "d", bad, 4)
    with pytest.raises(InputError, match=r"NaN or inf in the human matrix at stimulus pair \(1, 3\)"):
        rd.load_cichy(str(tmp_path / "d"))


def _king(root, sets, n_images=None):
    (root / "sim_judgements").mkdir(parents=True, exist_ok=True)
    io.savemat(root / "sim_judgements" / "BEHAVIOR.mat", {"BEHAVIOR": sets})
    for name, fields in sets.items():
        n = n_images or int((1 + np.sqrt(1 + 8 * np.shape(fields["pairwisedistances"])[-1])) / 2)
        _images(root / "images" / name, [f"{name}_{i:02d}.jpg" for i in range(n)])


def test_king_layout_pdist_order_and_subject_average(tmp_path):
    rng = np.random.default_rng(4)
    points = [rng.normal(size=(5, 2)) for _ in range(3)]  # three subjects, 5 stimuli
    per_subject = np.stack([distance.pdist(p) for p in points])  # (3, 10) in pdist order
    _king(tmp_path, {"set1": {"pairwisedistances": per_subject}, "set2": {"pairwisedistances": per_subject[:, :6]}})
    datasets = rd.load_dataset("king", str(tmp_path))
    assert [d.name for d in datasets] == ["king_set1", "king_set2"]
    np.testing.assert_allclose(datasets[0].matrix, distance.squareform(per_subject.mean(axis=0)))
    assert datasets[0].kind == "dissimilarity" and len(datasets[0].stimuli) == 5
    assert datasets[1].n_stimuli == 4 and datasets[1].stimuli[0].endswith("images/set2/set2_00.jpg")
    (only,) = rd.load_dataset("king_set2", str(tmp_path))
    assert only.name == "king_set2"


def test_king_errors(tmp_path):
    _king(tmp_path / "a", {"set1": {"pairwisedistances": np.ones((2, 10))}})
    with pytest.raises(InputError, match=r"no struct BEHAVIOR.set2 \(found \['set1'\]\)"):
        rd.load_king(str(tmp_path / "a"), "set2")
    with pytest.raises(InputError, match="unknown stimulus set 'set3'"):
        rd.load_king(str(tmp_path / "a"), "set3")
    _king(tmp_path / "b", {"set1": {"distances": np.ones((2, 10))}}, n_images=5)
    with pytest.raises(InputError, match="has no field 'pairwisedistances'"):
        rd.load_king(str(tmp_path / "b"), "set1")
    _king(tmp_path / "c", {"set1": {"pairwisedistances": np.ones((2, 9))}}, n_images=5)
    with pytest.raises(InputError, match="9 pairs is not n \\(n - 1\\) / 2"):
        rd.load_king(str(tmp_path / "c"), "set1")
    (tmp_path / "d" / "sim_judgements").mkdir(parents=True)
    io.savemat(tmp_path / "d" / "sim_judgements" / "BEHAVIOR.mat", {"behavior": np.ones(3)})
    with pytest.raises(InputError, match=r"no struct BEHAVIOR.set1 \(found \['behavior'\]\)"):
        rd.load_king(str(tmp_path / "d"), "set1")
    unrated = np.ones((2, 10))
    unrated[:, 4] = np.nan  # no subject rated pair 4 = (1, 2)
    _king(tmp_path / "e", {"set1": {"pairwisedistances": unrated}})
    with pytest.raises(InputError, match=r"at stimulus pair \(1, 2\)"):
        rd.load_king(str(tmp_path / "e"), "set1")


def test_generic_rsm_folder(tmp_path):
    rng = np.random.default_rng(5)
    matrix = _symmetric(rng, 4)
    np.save(tmp_path / "dissimilarity.npy", matrix)
    _images(tmp_path / "pics", ["z.jpg", "y.jpg", "x.jpg", "w.jpg"])
    (tmp_path / "stimuli.txt").write_text("pics/z.jpg\npics/y.jpg\n\npics/x.jpg\npics/w.jpg\n")
    (dataset,) = rd.load_dataset("rsm", str(tmp_path) + "/")
    assert dataset.name == tmp_path.name and dataset.kind == "dissimilarity"
    assert [s.rsplit("/", 1)[1] for s in dataset.stimuli] == ["z.jpg", "y.jpg", "x.jpg", "w.jpg"]  # listed order
    np.testing.assert_array_equal(dataset.similarity, -matrix)


def test_generic_rsm_errors(tmp_path):
    rng = np.random.default_rng(6)
    tmp_path.joinpath("a").mkdir()
    with pytest.raises(InputError, match="neither of similarity.npy and dissimilarity.npy"):
        rd.load_generic_rsm(str(tmp_path / "a"))
    np.save(tmp_path / "a" / "similarity.npy", _symmetric(rng, 3))
    np.save(tmp_path / "a" / "dissimilarity.npy", _symmetric(rng, 3))
    with pytest.raises(InputError, match="both of similarity.npy and dissimilarity.npy"):
        rd.load_generic_rsm(str(tmp_path / "a"))
    for name, matrix, message in [
        ("b", rng.random((3, 4)), r"must be square \(n, n\), got shape \(3, 4\)"),
        ("c", _symmetric(rng, 2), "at least 3 stimuli"),
        ("d", np.array([["a", "b", "c"]] * 3), "must be numeric"),
    ]:
        tmp_path.joinpath(name).mkdir()
        np.save(tmp_path / name / "similarity.npy", matrix)
        with pytest.raises(InputError, match=message):
            rd.load_generic_rsm(str(tmp_path / name))
    tmp_path.joinpath("e").mkdir()
    np.save(tmp_path / "e" / "similarity.npy", _symmetric(rng, 3))
    (tmp_path / "e" / "stimuli.txt").write_text("one.jpg\n")
    with pytest.raises(InputError, match="1 listed image.* not found, first .*one.jpg"):
        rd.load_generic_rsm(str(tmp_path / "e"))
    (tmp_path / "e" / "one.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="3 stimuli in the human matrix but 1 images"):
        rd.load_generic_rsm(str(tmp_path / "e"))
    (tmp_path / "e" / "stimuli.txt").write_text("\n")
    with pytest.raises(InputError, match="stimuli.txt: empty"):
        rd.load_generic_rsm(str(tmp_path / "e"))
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "similarity.npy").write_bytes(b"not npy")
    with pytest.raises(InputError, match="not a readable .npy file"):
        rd.load_generic_rsm(str(tmp_path / "f"))


def test_constant_or_lower_triangular_matrix_is_an_error(tmp_path):
    """RSA reads the upper triangle: a lower-triangular matrix would otherwise give None for every model."""
    lower = np.tril(_symmetric(np.random.default_rng(8), 4), k=-1)
    with pytest.raises(InputError, match="constant above the diagonal .*transpose a lower-triangular"):
        rd.RSMDataset("mine", lower, "dissimilarity", (), "mine/dissimilarity.npy")
    with pytest.raises(InputError, match=r"constant above the diagonal; RSA reads"):
        rd.RSMDataset("mine", np.ones((4, 4)), "similarity", (), "mine/similarity.npy")
    assert rd.RSMDataset("mine", lower.T, "dissimilarity", (), "mine/dissimilarity.npy").n_stimuli == 4


def test_triplet_folder(tmp_path):
    _images(tmp_path / "images", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    (tmp_path / "triplets.txt").write_text("i j k\n0 1 2\n3 2 1\n")
    (dataset,) = rd.load_dataset("triplets", str(tmp_path))
    assert dataset.name == tmp_path.name and dataset.triplets.n_objects == 4 and len(dataset.stimuli) == 4
    np.testing.assert_array_equal(dataset.triplets.triplets, [[0, 1, 2], [3, 2, 1]])
    (tmp_path / "triplets.txt").write_text("0 1 4\n")
    with pytest.raises(InputError, match="index 4 out of range for 4 objects"):
        rd.load_triplet_folder(str(tmp_path))
    (tmp_path / "triplets.txt").unlink()
    with pytest.raises(InputError, match="no triplets.npy"):
        rd.load_triplet_folder(str(tmp_path))


def test_dataset_spec_errors(tmp_path):
    assert rd.parse_datasets(" Cichy:/a , king_set1:/b,") == [("cichy", "/a"), ("king_set1", "/b")]
    with pytest.raises(InputError, match="unknown dataset kind 'things'"):
        rd.parse_datasets("things:/data")
    with pytest.raises(InputError, match="must be KIND:PATH"):
        rd.parse_datasets("cichy")
    with pytest.raises(InputError, match="unknown category 'pets'"):
        rd.load_datasets(f"peterson_pets:{tmp_path}")
    np.save(tmp_path / "similarity.npy", _symmetric(np.random.default_rng(7), 3))
    with pytest.raises(InputError, match="appear twice"):
        rd.load_datasets(f"rsm:{tmp_path},rsm:{tmp_path}")
