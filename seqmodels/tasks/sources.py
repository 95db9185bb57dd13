"""Reading a user's file from a local path or any fsspec URL (s3://, gs://, memory://, ...).

Every failure a user can cause becomes a ConfigError that names the option, so a spec run
prints one line instead of a traceback.
"""

from __future__ import annotations

import hashlib

import fsspec

from seqmodels.errors import ConfigError


def read_bytes(path: str, field: str = "path") -> bytes:
    """The whole file at `path` (a local path or an fsspec URL)."""
    if not path:
        raise ConfigError(field, "required: a local path or an fsspec URL")
    try:
        with fsspec.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(field, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(field, f"a directory, not a file: {path}") from None
    except (ValueError, ImportError, PermissionError) as err:  # unknown protocol, no driver
        raise ConfigError(field, f"cannot open {path}: {err}") from None


def read_text(path: str, field: str = "path") -> str:
    """The file at `path` decoded as UTF-8 (a leading byte-order mark is dropped)."""
    data = read_bytes(path, field)
    if not data:
        raise ConfigError(field, f"empty file: {path}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(field, f"not UTF-8 text (byte {err.start}): {path}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
