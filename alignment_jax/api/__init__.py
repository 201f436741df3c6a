"""The top-level Python API (`import alignment_jax as aj`): one module per kind of task."""
