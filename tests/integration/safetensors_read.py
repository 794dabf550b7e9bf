"""safetensors_read.py: reads an F32 safetensors file in pure Python (the
tests' Python has no numpy), for integration tests that recompute figures
from the embeddings a run wrote.  lib.sh puts this folder on PYTHONPATH."""
import json
import struct


def tensors(path):
    """{name: rows} of every tensor in the file: a list of rows of its last
    dimension (a 1-D tensor is one row)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (path, k, v["dtype"])
        s, e = v["data_offsets"]
        flat = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
        w = v["shape"][-1] if v["shape"] else 1
        out[k] = [list(flat[i:i + w]) for i in range(0, len(flat), w)]
    return out
