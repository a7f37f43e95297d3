"""A GGUF file's header, read before transformers loads it: the architecture, and whether the file
is whole (the header's tensor table says how many bytes the file must have)."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ModelFileError

_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes


class _Bad(Exception):
    """The header cannot be read as a GGUF header."""


def read_header(path: Path) -> tuple[str | None, int]:
    """(general.architecture or None, the bytes the file must have). Raises ModelFileError for a file
    that is not GGUF, is cut short, or whose header is corrupt, with its size and what was expected."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            return _scan(f, size)
    except _Bad as e:
        raise ModelFileError(f"{path} is not a usable GGUF file ({size} bytes): {e}",
                             "download it again (it is truncated or corrupt), or check the path") from e
    except (struct.error, EOFError) as e:
        raise ModelFileError(f"{path} is truncated: its GGUF header ends past the file's {size} bytes",
                             "download it again; the copy was cut short") from e


def _read(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) < n:
        raise EOFError
    return b


def _scan(f: BinaryIO, size: int) -> tuple[str | None, int]:
    from gguf.constants import GGML_QUANT_SIZES

    def string() -> bytes:
        (n,) = struct.unpack("<Q", _read(f, 8))
        if n > size:
            raise _Bad(f"a string of {n} bytes in the header at byte {f.tell() - 8}")
        return _read(f, n)

    def value(vtype: int) -> Any:
        if vtype == 8:
            return string()
        if vtype == 9:  # array: element type, count, elements
            etype, count = struct.unpack("<IQ", _read(f, 12))
            if etype in _SCALARS:  # a corrupt count runs past the end: the next read says so
                f.seek(_SCALARS[etype] * count, 1)
            else:
                for _ in range(count):
                    value(etype)
            return None
        if vtype not in _SCALARS:
            raise _Bad(f"unknown value type {vtype} at byte {f.tell() - 4}")
        raw = _read(f, _SCALARS[vtype])
        return int.from_bytes(raw, "little") if vtype in (4, 10) else None

    magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", _read(f, 24))
    if magic != b"GGUF":
        raise _Bad(f"it starts with {magic!r}, not b'GGUF'")
    if version < 2:
        raise _Bad(f"GGUF version {version}; transformers reads version 2 and later")
    arch, align = None, 32
    for _ in range(n_kv):
        key = string()
        (vtype,) = struct.unpack("<I", _read(f, 4))
        v = value(vtype)
        if key == b"general.architecture" and isinstance(v, bytes):
            arch = v.decode("utf-8", "replace")
        elif key == b"general.alignment" and isinstance(v, int) and v > 0:
            align = v
    end = 0
    for _ in range(n_tensors):
        name = string()
        (n_dims,) = struct.unpack("<I", _read(f, 4))
        if n_dims > 8:
            raise _Bad(f"tensor {name[:60]!r} has {n_dims} dimensions")
        dims = struct.unpack(f"<{n_dims}Q", _read(f, 8 * n_dims))
        ttype, offset = struct.unpack("<IQ", _read(f, 12))
        try:
            block, type_bytes = GGML_QUANT_SIZES[ttype]  # type: ignore[index]
        except KeyError:
            raise _Bad(f"tensor {name[:60]!r} has unknown type {ttype}") from None
        count = 1
        for d in dims:
            count *= d
        end = max(end, offset + count // block * type_bytes)
    data = -(-f.tell() // align) * align
    return arch, data + end
