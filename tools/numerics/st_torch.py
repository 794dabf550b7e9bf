"""st_torch.py: an F32 safetensors file as float64 torch tensors, for the
numerics references that read what the C side saved (llama_ref.py,
t5_ref.py); written from the format's description (an 8-byte header
length, a JSON header of dtype, shape and data_offsets, then the data)."""
import json
import struct

import torch


def read_safetensors(path):
    """{name: float64 tensor} of an F32 safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] != "F32":
            raise SystemExit("%s: %s is %s (only F32 is read here)" % (path, name, h["dtype"]))
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32)
        out[name] = t.reshape(h["shape"]).to(torch.float64)
    return out
