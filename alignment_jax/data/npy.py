"""Reading a `.npy` file a user named, with errors that say which file and what is wrong."""

import os

import numpy as np

from alignment_jax.errors import InputError

_MAGIC = b"\x93NUMPY"


def read_npy(path: str, what: str) -> np.ndarray:
    """The array in `path`; `what` names it in the error ("triplet file", "feature file", ...).

    The header is read first: a file shorter than its header says (truncated by a killed copy or
    download), an .npz archive or a pickle is named as such instead of failing inside numpy.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: {what} not found")
    problem = npy_problem(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy file ({e})") from e


def npy_problem(path: str) -> str:
    """What is wrong with the .npy file at `path` judged from its header and size ("" if nothing is)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(len(_MAGIC))
            if magic != _MAGIC:
                if magic.startswith(b"PK"):
                    return "not a readable .npy file: an .npz archive of several arrays, not a single array"
                return "not a readable .npy file: it does not start with the .npy header"
            f.seek(0)
            fmt = np.lib.format
            version = fmt.read_magic(f)
            shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        return f"not a readable .npy file: damaged header ({e})"
    if dtype.hasobject:
        return "not a readable .npy file: it holds Python objects (pickled data), not numbers"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        detail = f"{size:,} of {expected:,} bytes for shape {tuple(shape)}"
        return f"not a readable .npy file: truncated ({detail}); write it again"
    return ""
