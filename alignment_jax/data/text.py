"""Reading a text file a user named (triplets, object lists, labels, image lists): UTF-8, with errors that
say which file and where the text stops being UTF-8."""

import os

from alignment_jax.errors import InputError


def read_text(path: str, what: str) -> str:
    """The text of `path` decoded as UTF-8 (a byte-order mark is dropped); `what` names the file in errors
    ("triplet file", "object list", ...)."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror})") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}: the {what} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); save it as UTF-8"
        ) from e
