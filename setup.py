"""alignment_jax: measure and improve the alignment of vision representations with human similarity judgments."""

from setuptools import find_packages, setup

setup(
    name="alignment_jax",
    version="0.1.0",
    description="Human alignment of neural network representations, in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["alignment_jax", "alignment_jax.*"]),
    package_data={"alignment_jax": ["assets/*.npz"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.6",
        "ml-collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "ml_dtypes>=0.2",
        "pillow>=10.0",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "h5py>=3.10",
            "safetensors>=0.4",
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
            "pandas>=2.0",
            "ruff>=0.5",
        ],
        # array_record datasets read through tfds.data_source, without TensorFlow; tfrecord ones need the tfrecord extra
        "tfds": ["tensorflow-datasets>=4.9.7", "array_record>=0.5", "importlib_resources>=6.0"],
        "tfrecord": ["tensorflow-cpu>=2.16"],
        # TensorFlow SavedModels as a model source (AligNet's released models; alignment_jax/models/saved_model.py)
        "tensorflow": ["tensorflow-cpu>=2.16"],
        "notebooks": ["jupyter>=1.0", "nbclient>=0.10", "ipykernel>=6.29", "pandas>=2.0"],
        "hdf5": ["h5py>=3.10"],
        "openclip": ["safetensors>=0.4"],
        "gcs": ["etils[epath]>=1.5", "gcsfs>=2023.1", "tensorstore>=0.1.60"],
        "torch": ["torch>=2.1", "open_clip_torch>=2.23", "timm>=0.9"],
    },
)
