"""The demo's vision model: a small ViT trained on rendered objects, shipped as a big_vision `.npz`.

A random ViT sees little in the demo images, so the package ships a tiny "pretrained" one: trained to
report both what people care about (the strength of each concept blob) and what they do not (the colours
of the coarse background). Its representation mixes the two, as a real network's mixes human-relevant
and irrelevant features: zero-shot alignment is moderate and a linear probe can re-weight it.
Rebuild the shipped file with `python -m alignment_jax.models.demo`.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignment_jax.data.render import render_with_background
from alignment_jax.data.synthetic import concept_embedding
from alignment_jax.models.checkpoints import save_big_vision_npz
from alignment_jax.models.registry import MODELS, load_model

SPEC = MODELS["demo-vit"]  # architecture, image size and file of the shipped model
CHECKPOINT, VARIANT, IMAGE_SIZE, OPTIONS = SPEC.checkpoint, SPEC.variant, SPEC.image_size, SPEC.config
N_CONCEPTS = 10  # the demo world's concepts: blob layout and colours depend on their number


def training_data(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rendered random objects -> (images (n, 32, 32, 3) uint8, targets (n, 22): 10 concept strengths and
    the mean colour of each background quadrant (4 x 3))."""
    rng = np.random.default_rng(seed)
    embedding = concept_embedding(n_images, N_CONCEPTS, rng)
    images, background = render_with_background(embedding, IMAGE_SIZE, seed)
    quadrants = background.reshape(n_images, 2, 2, 2, 2, 3).mean(axis=(2, 4)).reshape(n_images, 12)
    targets = np.concatenate([embedding / embedding.std(), (quadrants - 0.5) / quadrants.std()], axis=1)
    return images, targets.astype(np.float32)


def train(steps: int = 1500, batch_size: int = 128, n_images: int = 8192, seed: int = 0, lr: float = 2e-3):
    """Trains the demo ViT by mean squared error; returns (params, loss over all training images)."""
    model = load_model(VARIANT, image_size=IMAGE_SIZE, seed=seed, **OPTIONS)
    images, targets = training_data(n_images, seed + 1)
    inputs = np.asarray(model.preprocess.normalize(images))
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, max(steps, 1)))

    def loss_fn(params, x, y):
        logits, _ = model.module.apply({"params": params}, x)
        return jnp.mean((logits - y) ** 2)

    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params, state = model.params, optimizer.init(model.params)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = rng.integers(0, n_images, batch_size)
        params, state, _ = step(params, state, inputs[batch], targets[batch])
    return params, float(jax.jit(loss_fn)(params, inputs, targets))


def main() -> None:
    params, loss = train()
    os.makedirs(os.path.dirname(CHECKPOINT), exist_ok=True)
    save_big_vision_npz(CHECKPOINT, jax.device_get(params))
    print(f"final training loss {loss:.4f}; wrote {CHECKPOINT} ({os.path.getsize(CHECKPOINT) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
