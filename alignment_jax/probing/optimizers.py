"""Optimizer directions without the learning rate, so that one compiled step serves a sweep over learning rates.

The update of a configuration is `-lr * direction(grad)`, with lr a traced per-configuration value.
All directions clip the global gradient norm first (the paper: 1.0).
"""

import optax

OPTIMIZERS = ("adam", "adamw", "sgd")


def direction(name: str, clip_norm: float, weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """adam | adamw (decoupled weight decay, scaled by lr as in optax.adamw) | sgd (momentum 0.9)."""
    clip = optax.clip_by_global_norm(clip_norm) if clip_norm > 0 else optax.identity()
    if name == "adam":
        return optax.chain(clip, optax.scale_by_adam())
    if name == "adamw":
        return optax.chain(clip, optax.scale_by_adam(), optax.add_decayed_weights(weight_decay))
    if name == "sgd":
        return optax.chain(clip, optax.trace(decay=0.9))
    raise ValueError(f"unknown optimizer {name!r}; one of {OPTIMIZERS}")
