"""What ``colorot apply``'s start-up costs, and what it would cost without torch in the process.

    python bench/startup.py [--runs 5]

Fits the bundled samples once, then prints medians over ``--runs`` fresh processes of:

1. ``python -c pass``: the interpreter alone;
2. ``colorot apply`` on one 8×8 image (as ``bench/speed.py`` times it);
3. the imports the apply command needs (torch, typer, rich, Pillow) and ``torch.load`` of the
   checkpoint, as ``colorot.checkpoint`` reads it;
4. the same imports without torch, and the checkpoint read by a prototype whitelisting
   unpickler that rebuilds its tensors as numpy arrays (``PROTOTYPE`` below: the zip archive
   ``torch.save`` writes, whose ``data.pkl`` names only ``collections.OrderedDict``,
   ``torch._utils._rebuild_tensor_v2`` and typed storages). The prototype checks that it
   reads the very parameters ``torch.load`` does, and fails otherwise.

Row 4 is what the start-up of a torch-free fast path (ridge map, 8-bit images) would be; it is a
measurement of the idea, not the package's reader.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

TORCH_LOAD = """
import sys
import torch, typer, rich.progress
from PIL import Image
torch.load(sys.argv[1], weights_only=True)
"""

PROTOTYPE = """
import io, pickle, sys, zipfile
import numpy as np
import typer, rich.progress
from PIL import Image

STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "LongStorage": "<i8", "IntStorage": "<i4"}

def rebuild_tensor(storage, offset, size, stride, *_):
    strides = [step * storage.itemsize for step in stride]
    return np.lib.stride_tricks.as_strided(storage[offset:], size, strides).copy()

class Reader(pickle.Unpickler):
    def __init__(self, archive, prefix):
        super().__init__(io.BytesIO(archive.read(prefix + "data.pkl")))
        self.archive, self.prefix = archive, prefix
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        raise pickle.UnpicklingError(f"refused: {module}.{name}")
    def persistent_load(self, pid):
        _, dtype, key, _, numel = pid
        return np.frombuffer(self.archive.read(f"{self.prefix}data/{key}"), dtype=dtype, count=numel)

with zipfile.ZipFile(sys.argv[1]) as archive:
    prefix = next(n for n in archive.namelist() if n.endswith("data.pkl"))[: -len("data.pkl")]
    state = Reader(archive, prefix).load()["model"]["state_dict"]
if len(sys.argv) > 2:  # check against torch.load (imports torch: not timed)
    import torch
    reference = torch.load(sys.argv[1], weights_only=True)["model"]["state_dict"]
    assert state.keys() == reference.keys()
    assert all(np.array_equal(state[k], reference[k].numpy()) for k in state), "parameters differ"
    print("prototype reads the parameters torch.load reads:", ", ".join(f"{k} {v.shape}" for k, v in state.items()))
"""


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, tiny = tmp / "model.pt", tmp / "tiny.png"
        subprocess.run([sys.executable, "-m", "colorot", "fit", str(ROOT / "samples" / "day.jpg"),
                        str(ROOT / "samples" / "sunset.jpg"), "-o", str(model)], check=True, capture_output=True)
        Image.new("RGB", (8, 8), (120, 90, 60)).save(tiny)
        check = subprocess.run([sys.executable, "-c", PROTOTYPE, str(model), "check"], check=True,
                               capture_output=True, text=True)
        print(check.stdout.strip())
        rows = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "colorot apply, one 8×8 image": [sys.executable, "-m", "colorot", "apply", str(model), str(tiny),
                                             str(tmp / "out") + "/", "--overwrite"],
            "imports + torch.load": [sys.executable, "-c", TORCH_LOAD, str(model)],
            "imports without torch + prototype reader": [sys.executable, "-c", PROTOTYPE, str(model)],
        }
        print(f"machine: {len(__import__('os').sched_getaffinity(0))} CPUs, python {sys.version.split()[0]}; "
              f"medians of {args.runs} fresh processes")
        for label, cmd in rows.items():
            print(f"  {label:45s} {statistics.median(wall(cmd) for _ in range(args.runs)):.2f} s")


if __name__ == "__main__":
    main()
