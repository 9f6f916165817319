"""Minimal safetensors reader (json + struct + numpy; the safetensors package is not needed).

Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data,
offsets relative to the end of the header, little-endian, C order.
"""

import json
import struct

import numpy as np

_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read(path):
    """Returns (tensors: {name: numpy array}, metadata: {str: str})."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * np.dtype(dt).itemsize or base + end > len(raw):
            raise ValueError(f"{path}: tensor {name} has inconsistent offsets {begin}..{end} for shape {shape}")
        out[name] = np.frombuffer(raw, dtype=dt, count=count, offset=base + begin).reshape(shape).copy()
    return out, meta
