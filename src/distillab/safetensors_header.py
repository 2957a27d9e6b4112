"""Read a safetensors file's JSON header without reading its tensors (no numpy, no torch).

The file is untrusted: the header length is bounded before anything is read, and a file too short,
not UTF-8 or not JSON is one :class:`InputError` naming it. Teacher caches and ``distillab budget``
(counting a model's parameters) both read headers this way.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from distillab.errors import InputError

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit: a larger header is refused before it is read


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """(the header as a JSON object, ``__metadata__`` included; its length in bytes)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise InputError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise InputError(f"{path}: safetensors header length {header_len} exceeds the file "
                                 f"({size} bytes) or the {MAX_HEADER_BYTES:,}-byte limit (truncated or corrupt)")
            header = json.loads(handle.read(header_len).decode("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: safetensors header is not UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header must be a JSON object, got {type(header).__name__}")
    return header, header_len
