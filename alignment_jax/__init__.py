"""alignment_jax: human alignment of vision representations (Muttenthaler et al., ICLR 2023) in JAX."""

__version__ = "0.1.0"
