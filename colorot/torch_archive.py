"""The file format ``torch.save`` writes, read and written without torch.

A zip archive, every member stored uncompressed under one folder (``archive/``):

* ``data.pkl``: the object, pickled (protocol 2); each tensor is
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` and
  each storage a persistent id ``("storage", torch.<Type>Storage, key, "cpu", numel)``;
* ``data/<key>``: each storage's bytes, little-endian, starting at a multiple of 64 bytes;
* ``version`` (``3``), ``byteorder`` (``little``), ``.format_version`` (``1``) and
  ``.storage_alignment`` (``64``), as torch writes them.

:func:`write` takes plain values (dict, list, tuple, str, int, float, bool, None) and numpy
arrays, which become tensors of the same dtype: what ``torch.load(weights_only=True)`` accepts,
and nothing else.  :func:`read` gives the object back with every tensor as a numpy array, and
unpickles nothing but those values (never code).  colorot's checkpoints are written this way, so
``colorot fit`` of a ridge map never imports torch.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile

import numpy as np

#: torch's typed storages → numpy dtypes (the byte order is the archive's).
STORAGE_DTYPES = {"DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
                  "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "b1"}
_STORAGE_OF = {np.dtype(code): name for name, code in STORAGE_DTYPES.items()}
#: Folder of every member, and the alignment of each storage's first byte in the file.
FOLDER = "archive"
ALIGNMENT = 64
#: Every member's time stamp: the same object always gives the same bytes.
_DATE = (1980, 1, 1, 0, 0, 0)
#: A zip local file header's fixed part, and the extra field torch pads with to align a member.
_LOCAL_HEADER = 30
_PADDING_FIELD = b"FB"


# ------------------------------------------------------------------------------ writing
def write(payload: object) -> bytes:
    """The bytes ``torch.save(payload)`` would write, numpy arrays standing for tensors.

    TypeError for a value that is neither plain nor an array of a dtype torch has.
    """
    pickler = _Pickler()
    pickler.dump(payload)
    members = [("data.pkl", bytes(pickler.out)), (".format_version", b"1"),
               (".storage_alignment", str(ALIGNMENT).encode()), ("byteorder", b"little")]
    members += [(f"data/{key}", array.tobytes()) for key, array in enumerate(pickler.storages)]
    members.append(("version", b"3\n"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(f"{FOLDER}/{name}", date_time=_DATE)
            info.extra = _padding(buffer.tell() + _LOCAL_HEADER + len(info.filename))
            archive.writestr(info, data)
    return buffer.getvalue()


def _padding(data_start: int) -> bytes:
    """An extra field that moves a member's data from ``data_start`` to a multiple of ALIGNMENT."""
    size = -(data_start + 4) % ALIGNMENT
    return _PADDING_FIELD + struct.pack("<H", size) + b"Z" * size


class _Pickler:
    """Protocol-2 pickle opcodes for plain values and tensors, written out by hand: the pickle
    module would import torch to name ``_rebuild_tensor_v2``."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.storages: list[np.ndarray] = []

    def dump(self, obj: object) -> None:
        self._save(obj)
        self.out += b"."  # STOP

    def _save(self, obj: object) -> None:
        out = self.out
        if isinstance(obj, np.generic):
            obj = obj.item()
        if obj is None:
            out += b"N"
        elif obj is True or obj is False:
            out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            text = obj.encode("utf-8", "surrogatepass")
            out += b"X" + struct.pack("<I", len(text)) + text
        elif isinstance(obj, dict):
            out += b"}"
            if obj:
                out += b"("
                for key, value in obj.items():
                    self._save(key)
                    self._save(value)
                out += b"u"  # SETITEMS
        elif isinstance(obj, list):
            out += b"]"
            if obj:
                out += b"("
                for item in obj:
                    self._save(item)
                out += b"e"  # APPENDS
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, np.ndarray):
            self._tensor(obj)
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} into a checkpoint")

    def _int(self, value: int) -> None:
        if 0 <= value < 1 << 8:
            self.out += b"K" + bytes([value])
        elif 0 <= value < 1 << 16:
            self.out += b"M" + struct.pack("<H", value)
        elif -(1 << 31) <= value < 1 << 31:
            self.out += b"J" + struct.pack("<i", value)
        else:  # LONG1: little-endian two's complement
            data = value.to_bytes((value.bit_length() >> 3) + 1, "little", signed=True)
            self.out += b"\x8a" + bytes([len(data)]) + data

    def _tuple(self, items: tuple) -> None:
        if not items:
            self.out += b")"
            return
        if len(items) > 3:
            self.out += b"("
        for item in items:
            self._save(item)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t")

    def _global(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def _tensor(self, array: np.ndarray) -> None:
        storage = _STORAGE_OF.get(array.dtype.newbyteorder("="))
        if storage is None:
            raise TypeError(f"cannot write an array of dtype {array.dtype} into a checkpoint")
        data = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
        key = len(self.storages)
        self.storages.append(data)
        stride, step = [], 1
        for size in reversed(array.shape):  # contiguous strides, in elements, as torch counts them
            stride.insert(0, step)
            step *= max(size, 1)
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("  # the arguments
        self.out += b"("  # the persistent id
        self._save("storage")
        self._global("torch", storage)
        self._save(str(key))
        self._save("cpu")
        self._save(int(array.size))
        self.out += b"tQ"  # TUPLE, BINPERSID
        self._save(0)
        self._tuple(tuple(int(n) for n in array.shape))
        self._tuple(tuple(stride))
        self.out += b"\x89"  # requires_grad False
        self._global("collections", "OrderedDict")
        self.out += b")R"  # OrderedDict(): no backward hooks
        self.out += b"tR"  # TUPLE, REDUCE


# ------------------------------------------------------------------------------ reading
def read(data: bytes) -> object:
    """The object a ``torch.save`` archive holds, every tensor as a numpy array.

    Raises (ValueError, pickle.UnpicklingError, zipfile.BadZipFile, …) on anything else: a
    damaged archive, compressed members, or a pickle naming anything but plain values,
    ``OrderedDict`` and tensors of the dtypes in :data:`STORAGE_DTYPES`.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        fault = member_fault(archive, len(data))
        if fault is not None:
            raise ValueError(fault)
        damaged = archive.testzip()  # every member's CRC-32, those not read here too (torch.load's check)
        if damaged is not None:
            raise zipfile.BadZipFile(f"member {damaged} fails its CRC check")
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("not a torch.save archive")
        prefix = pickles[0].removesuffix("data.pkl")
        byteorder = _entry(archive, prefix + "byteorder") if prefix + "byteorder" in archive.namelist() else b"little"
        if byteorder not in (b"little", b"big"):
            raise ValueError("unknown byte order")
        return _ArrayUnpickler(archive, prefix, "<" if byteorder == b"little" else ">").load()


def member_fault(archive: zipfile.ZipFile, size: int) -> str | None:
    """What is wrong, if anything, with the members of an archive of ``size`` bytes, as ``torch.save``
    writes them: each a named file, stored uncompressed.  A compressed one, or one declared larger than the
    archive, could inflate (a CRC check, torch.load) to gigabytes; one marked a folder (by its name or
    its MS-DOS attribute) torch.load reads as garbage."""
    for info in archive.infolist():
        if not info.filename:
            return "a member has no name, as torch.save never writes one"
        if info.compress_type != zipfile.ZIP_STORED:
            return f"member {info.filename} is compressed, as torch.save never writes one"
        if info.file_size > size:
            return f"member {info.filename} declares {info.file_size} bytes in an archive of {size}"
        if info.is_dir() or info.external_attr & 0x10:
            return f"member {info.filename} is marked a folder, as torch.save never writes one"
    return None


def _entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """An archive member (stored uncompressed: :func:`member_fault` was checked)."""
    return archive.read(name)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` allowing only plain values, ``OrderedDict`` (as dict) and tensors
    (``torch._utils._rebuild_tensor_v2`` over typed storages), rebuilt as numpy arrays."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        super().__init__(io.BytesIO(_entry(archive, prefix + "data.pkl")))
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return self._byteorder + STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: object) -> np.ndarray:
        """A storage ``("storage", dtype, key, location, numel)``: the archive's ``data/<key>``."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], str)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError("unexpected persistent id")
        _, dtype, key, _, numel = pid
        if key not in self._storages:
            raw = _entry(self._archive, f"{self._prefix}data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: object) -> np.ndarray:
    """The tensor ``size``/``stride`` at ``offset`` of ``storage`` (in elements), as a new array;
    ValueError if any of it lies outside the storage."""
    size, stride = tuple(size), tuple(stride)
    if not (isinstance(storage, np.ndarray) and len(size) == len(stride)
            and all(isinstance(n, int) and n >= 0 for n in (offset, *size, *stride))):
        raise ValueError("malformed tensor")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    if offset + sum((n - 1) * step for n, step in zip(size, stride)) >= len(storage):
        raise ValueError("tensor outside its storage")
    if math.prod(size) > len(storage) - offset:  # stride 0 repeats: a 12 KB file asked for gigabytes
        raise ValueError("tensor larger than its storage")
    steps = [step * storage.itemsize for step in stride]
    return np.lib.stride_tricks.as_strided(storage[offset:], size, steps).copy()
