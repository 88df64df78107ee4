"""Reading `embeddings.npz` (arrays `prompt` and `view_<name>`) without numpy.

An .npz is a ZIP of .npy files; each .npy is a magic string, a Python-literal header (dtype,
order, shape) and the raw little- or big-endian numbers. Only float32/float64 vectors are read;
anything else makes the best-view sub-judge abstain, as a missing file does.
"""

from __future__ import annotations

import ast
import struct
import zipfile
from pathlib import Path

MAGIC = b"\x93NUMPY"
MAX_ENTRY = 16 * 1024 * 1024
_FORMATS = {"<f4": "<f", "<f8": "<d", ">f4": ">f", ">f8": ">d"}


def _vector(data: bytes) -> list[float] | None:
    if not data.startswith(MAGIC):
        return None
    major = data[6]
    size_format, start = ("<H", 8) if major == 1 else ("<I", 8)
    header_len = struct.unpack(size_format, data[start:start + struct.calcsize(size_format)])[0]
    offset = start + struct.calcsize(size_format)
    try:
        header = ast.literal_eval(data[offset:offset + header_len].decode("latin-1"))
    except (ValueError, SyntaxError):
        return None
    code = _FORMATS.get(header.get("descr", ""))
    shape = header.get("shape", ())
    count = 1
    for dim in shape:
        count *= dim
    if code is None or header.get("fortran_order") or len([d for d in shape if d != 1]) > 1:
        return None
    body = data[offset + header_len:]
    width = struct.calcsize(code[1])
    if len(body) < count * width:
        return None
    return list(struct.unpack(f"{code[0]}{count}{code[1]}", body[:count * width]))


def read_embeddings(path: Path) -> dict[str, list[float]] | None:
    """{name: vector} of an embeddings.npz, or None when it is missing or unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            vectors = {}
            for member in archive.infolist():
                if not member.filename.endswith(".npy") or member.file_size > MAX_ENTRY:
                    continue
                vector = _vector(archive.read(member))
                if vector is not None:
                    vectors[member.filename[:-4]] = vector
            return vectors or None
    except (OSError, zipfile.BadZipFile, ValueError, struct.error):
        return None
