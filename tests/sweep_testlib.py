"""The gLocal sweep that several tests train: four configurations (alpha 0 = the global probe, two taus, a
larger alpha) with gLocal's initialization and regularizer."""

from alignment_jax.probing.sweep import Configurations, TrainSettings


def glocal_configurations(epochs: int) -> Configurations:
    """Four configurations of one view; the last three share their initial weights (seed id 1)."""
    return Configurations(
        {"lam": [1e-2, 1e-3, 1e-3, 1e-3], "lr": [0.05] * 4, "alpha": [0.0, 0.3, 0.3, 0.8], "tau": [0.1, 0.1, 1.0, 0.5]},
        [0] * 4, [epochs] * 4, [0, 1, 1, 1],
    )  # fmt: skip


def glocal_settings(epochs: int, local_batch_size: int, batch_size: int = 0) -> TrainSettings:
    """gLocal's training settings (identity start, identity regularizer, bias) with short early stopping."""
    return TrainSettings(
        batch_size=batch_size, epochs=epochs, min_epochs=3, patience=3, bias=True, local_batch_size=local_batch_size,
        init="identity", regularizer="identity",
    )  # fmt: skip
