"""gLocal's objective (probing/local.py) against an independent transcription of the reference's math."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignment_jax.data.synthetic import random_triplets
from alignment_jax.probing import glocal, local, objective


def reference_glocal(weights, bias, things, triplets, imagenet, alpha, tau, lmbda):
    """gLocal's GlocalFeatureProbe.training_step, transcribed: THINGS features standardized with their global
    scalar mean/std (main_glocal_probing_final.py), ImageNet features raw; F.normalize rows (eps 1e-12),
    diagonal removed by a boolean mask, CrossEntropyLoss with probability targets, TripletLoss(T=1),
    eye_regularization. Written with jnp so jax.grad gives the reference's gradient."""
    x = (things - things.mean()) / things.std()
    embedding = x @ weights + bias
    anchor, positive, negative = (embedding[triplets[:, c]] for c in range(3))
    dots = jnp.stack([jnp.sum(anchor * positive, 1), jnp.sum(anchor * negative, 1), jnp.sum(positive * negative, 1)])
    global_loss = jnp.mean(-(dots[0] - jnp.log(jnp.sum(jnp.exp(dots), axis=0))))

    normalize = lambda f: f / jnp.maximum(jnp.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    teacher, student = normalize(imagenet), normalize(imagenet @ weights + bias)
    b = imagenet.shape[0]
    off = ~np.eye(b, dtype=bool)
    drop_diagonal = lambda s: s[off].reshape(b, b - 1)
    p = jax.nn.softmax(drop_diagonal(teacher @ teacher.T) / tau, axis=-1)
    log_q = jax.nn.log_softmax(drop_diagonal(student @ student.T) / tau, axis=-1)
    locality_loss = jnp.mean(-jnp.sum(p * log_q, axis=1))

    eye = jnp.sum((weights - jnp.eye(weights.shape[0]) * jnp.mean(jnp.diag(weights))) ** 2)
    return (1 - alpha) * global_loss + alpha * locality_loss + lmbda * eye


def numpy_local(imagenet, weights, bias, tau):
    """The local term once more in plain numpy (float64)."""
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)
    t, s = unit(imagenet), unit(imagenet @ weights + bias)
    off = ~np.eye(len(imagenet), dtype=bool)
    t, s = (m[off].reshape(len(imagenet), -1) / tau for m in (t @ t.T, s @ s.T))
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True) - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True))
    return float(np.mean(-(p * log_q).sum(1)))


def problem(seed=0, n=20, p=6, t=60, b=9):
    rng = np.random.default_rng(seed)
    things = rng.normal(1.5, 3.0, size=(n, p))  # not standardized: the objective's caller standardizes
    triplets = random_triplets(n, t, rng).astype(np.int32)
    imagenet = rng.normal(0.5, 2.0, size=(b, p))
    weights = np.eye(p) * 0.7 + rng.normal(size=(p, p)) * 0.2
    bias = rng.normal(size=p) * 0.3
    return things, triplets, imagenet, weights, bias


@pytest.mark.parametrize("alpha, tau, lmbda", [(0.3, 0.1, 0.01), (0.7, 1.0, 1.0)])
def test_objective_equals_the_reference_value_and_gradient(alpha, tau, lmbda):
    with jax.enable_x64(True):
        things, triplets, imagenet, weights, bias = problem()
        x = (things - things.mean()) / things.std()  # the THINGS standardization of gLocal's transform.npz
        teacher = local.cosine_similarities(jnp.asarray(imagenet))  # raw ImageNet rows (probe.local.standardize=none)
        student = glocal.student_rows(imagenet, np.float32(things.mean()), np.float32(things.std()), "none")
        np.testing.assert_array_equal(student, imagenet.astype(np.float32))

        ours = lambda w, b: local.glocal_loss(
            {"weights": w, "bias": b}, jnp.asarray(x), jnp.asarray(triplets), jnp.ones(len(triplets)),
            jnp.asarray(imagenet), teacher, lmbda, alpha, tau,
            regularizer="identity", temperature=1.0, formulation="objects",
        )  # fmt: skip
        theirs = lambda w, b: reference_glocal(w, b, things, triplets, imagenet, alpha, tau, lmbda)
        w, b = jnp.asarray(weights), jnp.asarray(bias)
        (got_value, got_grads), (want_value, want_grads) = (
            jax.jit(jax.value_and_grad(f, (0, 1)))(w, b) for f in (ours, theirs)
        )
        assert float(got_value) == pytest.approx(float(want_value), rel=1e-10)
        for got, want in zip(got_grads, want_grads, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)
        value = local.local_loss({"weights": w, "bias": b}, jnp.asarray(imagenet), teacher, tau)
        assert float(value) == pytest.approx(numpy_local(imagenet, weights, bias, tau), rel=1e-10)


def test_things_standardization_of_the_student_rows():
    things, _, imagenet, weights, _ = problem(1)
    mean, std = np.float32(things.mean()), np.float32(things.std())
    rows = glocal.student_rows(imagenet, mean, std, "things")
    np.testing.assert_allclose(rows, (imagenet - mean) / std, rtol=1e-5)
    params = {"weights": jnp.asarray(weights, jnp.float32)}
    teacher = local.cosine_similarities(jnp.asarray(imagenet, jnp.float32))  # the teacher stays raw
    got = local.local_loss(params, jnp.asarray(rows), teacher, 0.5)
    unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)
    t, s = unit(imagenet), unit(((imagenet - mean) / std) @ weights)
    off = ~np.eye(len(imagenet), dtype=bool)
    t, s = (m[off].reshape(len(imagenet), -1) / 0.5 for m in (t @ t.T, s @ s.T))
    p = np.exp(t) / np.exp(t).sum(1, keepdims=True)
    want = np.mean(np.log(np.exp(s).sum(1)) - (p * s).sum(1))
    assert float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("formulation", objective.FORMULATIONS)
def test_alpha_zero_is_the_global_objective(formulation):
    things, triplets, imagenet, weights, bias = problem(2)
    rng = np.random.default_rng(3)
    x = jnp.asarray((things - things.mean()) / things.std(), jnp.float32)
    t, w_t = jnp.asarray(triplets), jnp.asarray((rng.random(len(triplets)) < 0.8).astype(np.float32))
    params = {"weights": jnp.asarray(weights, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
    local_x = jnp.asarray(imagenet, jnp.float32)
    teacher = local.cosine_similarities(local_x)
    settings = {"regularizer": "frobenius", "temperature": 0.7, "formulation": formulation}
    ours = jax.jit(
        jax.value_and_grad(lambda prm, a: local.glocal_loss(prm, x, t, w_t, local_x, teacher, 0.05, a, 0.1, **settings))
    )
    today = jax.jit(jax.value_and_grad(lambda prm: objective.loss(prm, x, t, w_t, 0.05, **settings)))
    (value, grads), (want_value, want_grads) = ours(params, jnp.float32(0.0)), today(params)  # alpha traced
    assert float(value) == pytest.approx(float(want_value), rel=1e-6)  # two compiled programs: rounding only
    for key, grad in grads.items():
        np.testing.assert_allclose(grad, want_grads[key], rtol=1e-6, atol=1e-7)


def test_vmap_over_configurations_equals_one_by_one():
    things, triplets, imagenet, weights, bias = problem(4)
    x = jnp.asarray((things - things.mean()) / things.std(), jnp.float32)
    local_x = jnp.asarray(imagenet, jnp.float32)
    teacher = local.cosine_similarities(local_x)  # once per batch, shared by every configuration
    alphas, taus, lams = jnp.array([0.0, 0.3, 0.9]), jnp.array([0.05, 0.5, 1.0]), jnp.array([1e-3, 0.1, 1.0])
    stacked = {"weights": jnp.asarray(np.stack([weights * s for s in (1.0, 0.5, 2.0)]), jnp.float32)}
    loss = functools.partial(
        local.glocal_loss, regularizer="identity", temperature=1.0, formulation="matrix", local_valid=None
    )
    value_grad = jax.jit(jax.value_and_grad(loss))
    args = (x, jnp.asarray(triplets), jnp.ones(len(triplets)), local_x, teacher)
    batched = jax.jit(jax.vmap(value_grad, in_axes=(0, None, None, None, None, None, 0, 0, 0)))
    values, grads = batched(stacked, *args, lams, alphas, taus)
    for c in range(3):
        value, grad = value_grad({"weights": stacked["weights"][c]}, *args, lams[c], alphas[c], taus[c])
        assert float(values[c]) == pytest.approx(float(value), rel=1e-5)
        np.testing.assert_allclose(grads["weights"][c], grad["weights"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_scale_safe_normalization(scale):
    _, _, imagenet, weights, _ = problem(5)
    params = {"weights": jnp.asarray(weights, jnp.float32)}
    f = jnp.asarray(imagenet, jnp.float32)
    value = jax.jit(
        jax.value_and_grad(lambda feats: local.local_loss(params, feats, local.cosine_similarities(feats), 0.2))
    )
    (scaled, grad_scaled), (plain, grad) = value(f * scale), value(f)
    assert float(scaled) == pytest.approx(float(plain), rel=1e-5)
    assert np.all(np.isfinite(grad_scaled))
    np.testing.assert_allclose(grad_scaled * scale, grad, rtol=1e-3, atol=1e-6)  # d/d(cF) = (1/c) d/dF
    zero = jnp.zeros((2, 3)).at[1].set(jnp.array([3.0, 4.0, 0.0]))
    np.testing.assert_allclose(local.unit_rows(zero), [[0, 0, 0], [0.6, 0.8, 0]], atol=1e-7)
    assert np.all(np.isfinite(jax.grad(lambda z: jnp.sum(local.unit_rows(z) ** 3))(zero)))


def test_padding_rows_are_left_out():
    _, _, imagenet, weights, bias = problem(6, b=7)
    params = {"weights": jnp.asarray(weights, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
    real = jnp.asarray(imagenet, jnp.float32)
    padded = jnp.concatenate([real, jnp.asarray(np.random.default_rng(0).normal(size=(3, real.shape[1])))])
    valid = jnp.arange(10) < 7
    small = jax.jit(jax.value_and_grad(lambda prm: local.local_loss(prm, real, local.cosine_similarities(real), 0.3)))
    large = jax.jit(
        jax.value_and_grad(lambda prm: local.local_loss(prm, padded, local.cosine_similarities(padded), 0.3, valid))
    )
    (value, grads), (want, want_grads) = large(params), small(params)
    assert float(value) == pytest.approx(float(want), rel=1e-5)
    for key in params:
        np.testing.assert_allclose(grads[key], want_grads[key], rtol=1e-4, atol=1e-6)


def test_validation_terms_are_unweighted():
    things, triplets, imagenet, weights, _ = problem(7)
    x = jnp.asarray((things - things.mean()) / things.std(), jnp.float32)
    params = {"weights": jnp.asarray(weights, jnp.float32)}
    local_x = jnp.asarray(imagenet, jnp.float32)
    teacher = local.cosine_similarities(local_x)
    ones = jnp.ones(len(triplets))
    ce, acc, loc = local.glocal_validation(
        params, x, jnp.asarray(triplets), ones, local_x, teacher, 0.25, temperature=1.0, formulation="rows"
    )
    want_ce, want_acc = objective.evaluate(params, x, jnp.asarray(triplets), ones, temperature=1.0, formulation="rows")
    assert (float(ce), float(acc)) == (pytest.approx(float(want_ce)), pytest.approx(float(want_acc)))
    assert float(loc) == pytest.approx(float(local.local_loss(params, local_x, teacher, 0.25)))
