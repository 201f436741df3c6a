"""Where checkpoint files come from: local paths, or remote ones copied once into a local cache.

A remote path (`gs://`, `https://`, `file://`, ...) is opened through whatever layer is installed,
in turn: etils.epath (gcsfs / tf.io.gfile behind it), tensorstore, then plain HTTPS (a public
`gs://bucket/x` is also `https://storage.googleapis.com/bucket/x`). The copy is written atomically,
so an interrupted download leaves nothing behind. Nothing here runs unless a remote path is asked for.
"""

import hashlib
import os
import re
import shutil
import urllib.request
from collections.abc import Callable
from typing import Any, BinaryIO

from alignment_jax.atomic import atomic_path, remove_stale_temporary
from alignment_jax.caches import default_cache_dir
from alignment_jax.errors import InputError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_CHUNK = 1 << 22


def is_remote(path: str) -> bool:
    """True for `scheme://...` paths."""
    return bool(_SCHEME.match(path))


def cached_name(url: str, cache_dir: str) -> str:
    """The cache file for `url`: `<cache_dir>/<hash of url>-<basename>`."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache_dir, f"{digest}-{os.path.basename(url.rstrip('/')) or 'file'}")


def fetch(path: str, cache_dir: str | None = None) -> str:
    """A local file for `path`: itself if local, else a cached copy (downloaded once)."""
    if not is_remote(path):
        if not os.path.exists(path):
            raise InputError(f"{path}: checkpoint not found; give an existing file or folder")
        return path
    local = cached_name(path, cache_dir or default_cache_dir())
    if os.path.isfile(local):
        return local
    remove_stale_temporary(local)  # of a download that was killed
    errors = []
    for name, opener in _openers(path):
        try:
            src = opener(path)
        except Exception as e:  # each layer fails in its own way: report them all
            errors.append(f"{name}: {type(e).__name__}: {e}")
            continue
        with src, atomic_path(local) as tmp, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
            expected = _content_length(src)
            if expected is not None and dst.tell() != expected:  # a dropped connection can end a read quietly
                raise InputError(f"{path}: download stopped after {dst.tell()} of {expected} bytes; try again")
        return local
    tried = "; ".join(errors) or "no layer handles this scheme"
    raise InputError(
        f"{path}: cannot open ({tried}); install gcsfs or tensorflow for gs://, "
        "or download the file and give its local path"
    )


def _content_length(response: Any) -> int | None:
    """The size an HTTP(S) response announces (Content-Length), if any."""
    length = getattr(response, "headers", None) and response.headers.get("Content-Length")
    return int(length) if length and str(length).isdigit() else None


def sha256(path: str) -> str:
    """Hex SHA-256 of a file; of a folder, over its files' relative paths and contents in sorted order."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).encode("utf-8") + b"\0")
                _update(h, full)
    else:
        _update(h, path)
    return h.hexdigest()


def _update(h: Any, path: str) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def _openers(path: str) -> list[tuple[str, Callable[[str], BinaryIO]]]:
    scheme = _SCHEME.match(path).group(1).lower()
    if scheme in ("http", "https", "file"):
        return [("urllib", _open_urllib)]
    if scheme == "gs":
        return [("etils.epath", _open_epath), ("tensorstore", _open_tensorstore), ("https mirror", _open_gcs_https)]
    return [("etils.epath", _open_epath)]


def _open_urllib(url: str) -> BinaryIO:
    return urllib.request.urlopen(url, timeout=60)


def _open_gcs_https(url: str) -> BinaryIO:
    return _open_urllib("https://storage.googleapis.com/" + url[len("gs://") :])


def _open_epath(url: str) -> BinaryIO:
    from etils import epath

    return epath.Path(url).open("rb")


def _open_tensorstore(url: str) -> BinaryIO:
    import io

    import tensorstore as ts

    bucket, _, key = url[len("gs://") :].partition("/")
    store = ts.KvStore.open({"driver": "gcs", "bucket": bucket}).result()
    result = store.read(key).result()
    if result.state != "value":
        raise FileNotFoundError(url)
    return io.BytesIO(bytes(result.value))
