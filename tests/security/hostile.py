"""Generators of hostile files: pickles through every opcode family, tampered numpy states,
corrupt and oversized ``.npy``/``.npz`` archives, malicious checkpoints.

Every payload that would run, if loaded by a permissive reader, creates ``marker`` (a file
the tests then check does not exist). Pickles are assembled from raw opcodes, so the tests
do not depend on how Python or numpy happen to pickle things.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np


# ---------------------------------------------------------------------------- pickle opcodes
def _u(text: str) -> bytes:
    """SHORT_BINUNICODE / BINUNICODE of ``text``."""
    b = text.encode("utf-8")
    if len(b) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(b)]) + b
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def _b(data: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return pickle.BININT + struct.pack("<i", n)


def _long(n: int) -> bytes:
    data = pickle.encode_long(n)
    return pickle.LONG1 + bytes([len(data)]) + data


def _tuple(*items: bytes) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _p4(body: bytes) -> bytes:
    return pickle.PROTO + b"\x04" + body + pickle.STOP


def _stack_global(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + pickle.STACK_GLOBAL


def _infos_wrap(value: bytes) -> bytes:
    """``{"infos": [value]}``: the payload sits where a sample would."""
    return pickle.EMPTY_DICT + _u("infos") + pickle.EMPTY_LIST + value + pickle.APPEND + pickle.SETITEM


def _dtype(spec: str, state: bytes) -> bytes:
    """numpy.dtype(spec, False, True) followed by BUILD(state)."""
    return (
        _stack_global("numpy", "dtype")
        + _tuple(_u(spec), pickle.NEWFALSE, pickle.NEWTRUE)
        + pickle.REDUCE
        + state
        + pickle.BUILD
    )


def _plain_state(endian: str = "<", elsize: int = -1, align: int = -1, flags: int = 0) -> bytes:
    return _tuple(_int(3), _u(endian), pickle.NONE, pickle.NONE, pickle.NONE, _int(elsize), _int(align), _int(flags))


def _reconstructed(dtype: bytes, shape: tuple[int, ...], raw: bytes, module: str = "numpy.core.multiarray") -> bytes:
    """numpy's protocol 2-4 array layout: _reconstruct(ndarray, (0,), b'b') + BUILD((1, shape, dtype, False, raw))."""
    shape_b = _tuple(*(_long(n) for n in shape))
    return (
        _stack_global(module, "_reconstruct")
        + _tuple(_stack_global("numpy", "ndarray"), _tuple(_int(0)), pickle.SHORT_BINBYTES + b"\x01b")
        + pickle.REDUCE
        + _tuple(_int(1), shape_b, dtype, pickle.NEWFALSE, _b(raw))
        + pickle.BUILD
    )


def hostile_pickles(marker: Path) -> dict[str, bytes]:
    """Named hostile pickle byte strings; each would create ``marker`` or crash if trusted."""
    m = str(marker)
    sh = f"touch '{m}'"
    cases: dict[str, bytes] = {}
    # --- code execution through each opcode family that can call or instantiate
    cases["GLOBAL+REDUCE builtins.open"] = f"cbuiltins\nopen\n(V{m}\nVw\ntR.".encode()
    cases["GLOBAL+REDUCE os.system"] = f"cos\nsystem\n(V{sh}\ntR.".encode()
    cases["GLOBAL+REDUCE posix.system"] = f"cposix\nsystem\n(V{sh}\ntR.".encode()
    cases["GLOBAL __builtin__.eval (py2 name)"] = f"c__builtin__\neval\n(Vopen({m!r}, 'w')\ntR.".encode()
    cases["STACK_GLOBAL+REDUCE builtins.exec"] = _p4(
        _stack_global("builtins", "exec") + _tuple(_u(f"open({m!r}, 'w')")) + pickle.REDUCE
    )
    cases["STACK_GLOBAL+REDUCE subprocess.call"] = _p4(
        _stack_global("subprocess", "call") + _tuple(_u(sh)) + pickle.NEWTRUE + pickle.TUPLE2 + pickle.REDUCE
    )
    cases["INST os.system"] = f"(V{sh}\nios\nsystem\n.".encode()
    cases["INST builtins.open"] = f"(V{m}\nVw\nibuiltins\nopen\n.".encode()
    cases["OBJ os.system"] = f"(cos\nsystem\nV{sh}\no.".encode()
    cases["NEWOBJ subprocess.Popen"] = (
        b"\x80\x02" + b"csubprocess\nPopen\n" + _tuple(_u(sh)) + pickle.NEWOBJ + pickle.STOP
    )
    cases["NEWOBJ_EX subprocess.Popen"] = _p4(
        _stack_global("subprocess", "Popen")
        + _tuple(_u(sh))
        + pickle.EMPTY_DICT
        + _u("shell")
        + pickle.NEWTRUE
        + pickle.SETITEM
        + pickle.NEWOBJ_EX
    )
    cases["NEWOBJ on allowed numpy.ndarray stand-in"] = _p4(
        _stack_global("numpy", "ndarray") + _tuple(_tuple(_int(2))) + pickle.NEWOBJ
    )
    cases["NEWOBJ_EX on allowed numpy.dtype"] = _p4(
        _stack_global("numpy", "dtype") + _tuple(_u("O")) + pickle.EMPTY_DICT + pickle.NEWOBJ_EX
    )
    cases["payload nested in infos"] = _p4(_infos_wrap(_stack_global("os", "system") + _tuple(_u(sh)) + pickle.REDUCE))
    cases["BUILD smuggling a global in the state"] = _p4(
        _stack_global("collections", "OrderedDict")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.EMPTY_DICT
        + _u("hook")
        + _stack_global("os", "system")
        + pickle.SETITEM
        + pickle.BUILD
    )
    cases["BUILD on the numpy.dtype factory"] = _p4(
        _stack_global("numpy", "dtype")
        + pickle.EMPTY_DICT
        + _u("__defaults__")
        + _tuple(_u("O"))
        + pickle.SETITEM
        + pickle.BUILD
    )
    cases["BUILD slotstate on _reconstruct"] = _p4(
        _stack_global("numpy.core.multiarray", "_reconstruct")
        + pickle.NONE
        + pickle.EMPTY_DICT
        + _u("__code__")
        + pickle.NONE
        + pickle.SETITEM
        + pickle.TUPLE2
        + pickle.BUILD
    )
    cases["EXT1 extension code"] = _p4(pickle.EXT1 + b"\x01")
    cases["persistent id"] = _p4(_u("x") + pickle.BINPERSID)
    cases["unknown numpy global numpy.load"] = _p4(
        _stack_global("numpy", "load") + _tuple(_u(m), pickle.NEWTRUE) + pickle.REDUCE
    )
    cases["numpy.testing runstring"] = _p4(
        _stack_global("numpy.testing._private.utils", "runstring")
        + _tuple(_u(f"open({m!r},'w')"), pickle.EMPTY_DICT)
        + pickle.REDUCE
    )
    # --- tampered numpy dtype states: the object-dtype flag trick (a pointer 0x4141414141414141)
    obj_state = _plain_state("|", -1, -1, 0)
    cases["object dtype with cleared flags (segfault trick)"] = _p4(
        _reconstructed(_dtype("O8", obj_state), (1,), b"A" * 8)
    )
    cases["object dtype O with its own flags"] = _p4(
        _reconstructed(_dtype("O", _plain_state("|", -1, -1, 63)), (1,), b"A" * 8)
    )
    cases["f8 dtype whose state claims object flags"] = _p4(
        _reconstructed(_dtype("f8", _plain_state("<", -1, -1, 63)), (1,), b"A" * 8)
    )
    cases["f8 dtype with a changed element size"] = _p4(
        _reconstructed(_dtype("f8", _plain_state("<", 64, 8, 0)), (1,), b"A" * 8)
    )
    cases["f8 dtype with fields"] = _p4(
        _reconstructed(
            _dtype(
                "f8",
                _tuple(
                    _int(3),
                    _u("<"),
                    pickle.NONE,
                    _tuple(_u("a")),
                    pickle.EMPTY_DICT
                    + _u("a")
                    + _tuple(_dtype("O", _plain_state("|", -1, -1, 63)), _int(0))
                    + pickle.SETITEM,
                    _int(8),
                    _int(1),
                    _int(0),
                ),
            ),
            (1,),
            b"A" * 8,
        )
    )
    cases["void dtype V8"] = _p4(_reconstructed(_dtype("V8", _plain_state("|", 8, 1, 0)), (1,), b"A" * 8))
    cases["datetime dtype M8 with odd flags"] = _p4(
        _reconstructed(_dtype("M8", _plain_state("<", -1, -1, 16)), (1,), b"A" * 8)
    )
    cases["dtype spec not a string"] = _p4(
        _stack_global("numpy", "dtype") + _tuple(pickle.EMPTY_LIST, pickle.NEWFALSE, pickle.NEWTRUE) + pickle.REDUCE
    )
    cases["dtype endian not a byte order"] = _p4(_reconstructed(_dtype("f8", _plain_state("!")), (1,), b"A" * 8))
    f8 = _dtype("f8", _plain_state("<"))
    # --- array states that do not match their data
    cases["huge shape, 8 data bytes"] = _p4(_reconstructed(f8, (1 << 40,), b"A" * 8))
    cases["shape x itemsize overflows int64"] = _p4(_reconstructed(f8, (1 << 62, 1 << 62), b""))
    cases["negative shape"] = _p4(_reconstructed(f8, (-1,), b"A" * 8))
    cases["too few data bytes"] = _p4(_reconstructed(f8, (4,), b"A" * 8))
    cases["data as a list (object array layout)"] = _p4(
        _stack_global("numpy.core.multiarray", "_reconstruct")
        + _tuple(_stack_global("numpy", "ndarray"), _tuple(_int(0)), pickle.SHORT_BINBYTES + b"\x01b")
        + pickle.REDUCE
        + _tuple(_int(1), _tuple(_int(1)), f8, pickle.NEWFALSE, pickle.EMPTY_LIST)
        + pickle.BUILD
    )
    cases["_reconstruct of another class"] = _p4(
        _stack_global("numpy.core.multiarray", "_reconstruct")
        + _tuple(_stack_global("collections", "OrderedDict"), _tuple(_int(0)), pickle.SHORT_BINBYTES + b"\x01b")
        + pickle.REDUCE
    )
    cases["array without its state"] = _p4(
        _stack_global("numpy._core.multiarray", "_reconstruct")
        + _tuple(_stack_global("numpy", "ndarray"), _tuple(_int(0)), pickle.SHORT_BINBYTES + b"\x01b")
        + pickle.REDUCE
    )
    cases["second BUILD on a built array"] = _p4(
        _stack_global("numpy._core.numeric", "_frombuffer")
        + _tuple(_b(b"A" * 8), f8, _tuple(_int(1)), _u("C"))
        + pickle.REDUCE
        + _tuple(_int(1), _tuple(_int(1)), f8, pickle.NEWFALSE, _b(b"A" * 8))
        + pickle.BUILD
    )
    cases["_frombuffer huge shape"] = _p4(
        _stack_global("numpy._core.numeric", "_frombuffer")
        + _tuple(_b(b"A" * 8), f8, _tuple(_int(1 << 30), _int(1 << 30)), _u("C"))
        + pickle.REDUCE
    )
    cases["_frombuffer bad order"] = _p4(
        _stack_global("numpy._core.numeric", "_frombuffer")
        + _tuple(_b(b"A" * 8), f8, _tuple(_int(1)), _u("K"))
        + pickle.REDUCE
    )
    cases["scalar with wrong byte count"] = _p4(
        _stack_global("numpy.core.multiarray", "scalar") + _tuple(f8, _b(b"A" * 3)) + pickle.REDUCE
    )
    cases["scalar of object dtype"] = _p4(
        _stack_global("numpy.core.multiarray", "scalar")
        + _tuple(_dtype("O", _plain_state("|", -1, -1, 63)), _b(b"A" * 8))
        + pickle.REDUCE
    )
    cases["bare numpy.ndarray class in the data"] = _p4(_infos_wrap(_stack_global("numpy", "ndarray")))
    cases["_codecs.encode with another codec"] = _p4(
        _stack_global("_codecs", "encode") + _tuple(_u("x"), _u("rot13")) + pickle.REDUCE
    )
    # --- malformed streams
    cases["empty file"] = b""
    cases["random bytes"] = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
    cases["truncated pickle"] = pickle.dumps({"infos": [{"token": "a" * 100}]}, protocol=4)[:40]
    cases["BINBYTES8 claims 2**60 bytes"] = _p4(pickle.BINBYTES8 + struct.pack("<Q", 1 << 60) + b"xx")
    cases["LONG4 claims 2**31 bytes"] = (
        b"\x80\x02" + pickle.LONG4 + struct.pack("<i", 2**31 - 1) + b"\x01" + pickle.STOP
    )
    cases["stack underflow"] = _p4(pickle.REDUCE)
    cases["deeply nested lists"] = b"\x80\x04" + pickle.EMPTY_LIST * 100_000 + pickle.APPEND * 99_999 + pickle.STOP
    return cases


def object_dtype_trick() -> bytes:
    """The pickle that segfaults a trusting loader (``pickle.loads``) on numpy 1.x/2.x."""
    return _p4(_reconstructed(_dtype("O8", _plain_state("|", -1, -1, 0)), (1,), b"A" * 8))


# ------------------------------------------------------------------------------- .npy/.npz
def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header_only(descr: str, shape: tuple[int, ...], fortran: bool = False, data: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` whose header claims ``shape`` but that holds only ``data``."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    total = 10 + len(header) + 1
    header += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def npz_bytes(members: dict[str, bytes], compress: bool = True) -> bytes:
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", mode) as z:
        for name, data in members.items():
            z.writestr(name if name.endswith(".npy") or "/" in name else f"{name}.npy", data)
    return buf.getvalue()


def hostile_label_files(shape: tuple[int, ...], marker: Path) -> dict[str, bytes]:
    """``.npy`` payloads for a reader expecting an integer label volume of ``shape``."""
    ok = npy_bytes(np.zeros(shape, np.uint8))
    obj = np.empty(2, dtype=object)
    obj[0] = _MarkerOnLoad(marker)
    return {
        "empty": b"",
        "random bytes": bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)),
        "bad magic": b"\x93NUMPX" + ok[6:],
        "truncated data": ok[: len(ok) // 2],
        "truncated header": ok[:20],
        "object array (pickle inside)": npy_bytes(obj, allow_pickle=True),
        "huge header shape": npy_header_only("|u1", (1 << 20, 1 << 20, 1 << 14)),
        "huge header shape, overflowing": npy_header_only("<f8", (1 << 62, 1 << 62)),
        "negative shape": npy_header_only("|u1", (-1,) + shape[1:]),
        "structured dtype": npy_header_only("[('a', '<i4'), ('b', '|O')]", shape),
        "object descr": npy_header_only("|O", shape),
        "complex dtype": npy_bytes(np.zeros(shape, np.complex64)),
        "unicode dtype": npy_bytes(np.zeros(shape, "<U1")),
        "wrong shape": npy_bytes(np.zeros(shape[:-1], np.uint8)),
        "header not a dict": b"\x93NUMPY\x01\x00" + struct.pack("<H", 6) + b"[1,2]\n",
        "header with code": b"\x93NUMPY\x01\x00" + struct.pack("<H", 40) + b"{'descr': __import__('os').getcwd()}   \n",
        "npy version 3": b"\x93NUMPY\x03\x00" + ok[8:],
    }


class _MarkerOnLoad:
    """Unpickling this (by a trusting reader) creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(marker: Path) -> bytes:
    """A real ``torch.save`` zip whose pickle holds a REDUCE that would create ``marker``."""
    import torch

    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}, "step": 1, "hook": _MarkerOnLoad(marker)}, buf)
    return buf.getvalue()


# ------------------------------------------------------------------ bounded child processes
#: Address space a hostile-input child may map beyond what the interpreter maps once torch and
#: gaussrender are imported (~0.7 GiB with the CPU build of torch, more with CUDA builds):
#: "a few hundred MB" for the case itself.
CHILD_MEMORY = 512 << 20
#: Wall-clock (and CPU) seconds a hostile-input child may run: the import takes 2-7 s on a
#: loaded 2-core machine, a refusal well under 1 s.
CHILD_SECONDS = 60

# Imports what every case imports, then caps the address space at what is mapped now plus
# the budget, then runs the module (-m) or code (-c) with the remaining arguments.
_LAUNCHER = """
import resource, runpy, sys
import torch, gaussrender, gaussrender.cli, gaussrender.train.run
with open("/proc/self/statm") as f:
    mapped = int(f.read().split()[0]) * resource.getpagesize()
limit = mapped + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
kind, target = sys.argv[2], sys.argv[3]
sys.argv = [target] + sys.argv[4:]
if kind == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<case>", "exec"), {"__name__": "__main__"})
"""


def run_bounded(args: list[str], memory: int = CHILD_MEMORY, seconds: int = CHILD_SECONDS, cwd=None):
    """Run ``python -m MODULE ...`` or ``python -c CODE ...`` (``args``) in a child whose
    address space (RLIMIT_AS) is capped at what it maps after importing torch and
    gaussrender plus ``memory`` bytes, with RLIMIT_CPU and a wall-clock timeout of
    ``seconds`` and one OpenMP thread. Returns ``(CompletedProcess, wall seconds)``; a case
    that blows up fails with MemoryError / a kill / TimeoutExpired instead of taking the
    machine down."""
    import os
    import resource
    import subprocess
    import sys
    import time

    import gaussrender

    if args[0] not in ("-m", "-c"):
        raise ValueError(f"args must start with -m or -c, got {args[0]!r}")

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))

    src = str(Path(gaussrender.__file__).resolve().parents[1])
    root = str(Path(__file__).resolve().parents[2])
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([src, root, os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(memory), *args],
        capture_output=True,
        text=True,
        timeout=seconds,
        preexec_fn=limits,
        env=env,
        cwd=cwd,
    )
    return proc, time.monotonic() - start


def patch_declared_size(data: bytes, member_suffix: str, size: int) -> bytes:
    """A zip whose member ending in ``member_suffix`` *declares* ``size`` uncompressed bytes
    (local header and central directory), the data unchanged: what a loader that trusts the
    directory would allocate."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix))
    name = info.filename.encode()
    local = info.header_offset
    assert out[local : local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", out, local + 22, size)
    central = 0
    while True:
        central = out.index(b"PK\x01\x02", central)
        n = struct.unpack_from("<H", out, central + 28)[0]
        if bytes(out[central + 46 : central + 46 + n]) == name:
            break
        central += 4
    struct.pack_into("<I", out, central + 24, size)
    return bytes(out)


def deflate_bomb_checkpoint(inflated: int) -> bytes:
    """A real ``torch.save`` zip plus one deflated member of ``inflated`` zero bytes (~1/1000
    of that on disk)."""
    import torch

    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}, "step": 1}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        prefix = src.infolist()[0].filename.split("/")[0]
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        bomb = zipfile.ZipInfo(f"{prefix}/data/bomb")
        bomb.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(bomb, "w", force_zip64=True) as f:
            chunk = bytes(1 << 22)
            for _ in range(inflated >> 22):
                f.write(chunk)
    return out.getvalue()
