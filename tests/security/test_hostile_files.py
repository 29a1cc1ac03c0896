"""Hostile and corrupt files: every loader refuses them by name, nothing runs, nothing crashes.

Hostile loads run in a child process (a batch of cases per child, to stay fast): a segfault
or an abort then fails the test with a negative return code instead of killing pytest. For
each case the child records the exception type, its message and the peak memory Python
allocated during the load (tracemalloc also sees numpy's buffers), so "checked before
allocating" is measured, not assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gaussrender
from gaussrender import OCC3D_NUSCENES, SSCBENCH_KITTI360

from .hostile import (
    hostile_label_files,
    hostile_pickles,
    malicious_checkpoint,
    npy_bytes,
    npy_header_only,
    npz_bytes,
    object_dtype_trick,
)

# peak Python-visible allocation allowed while refusing a file (the real limits are far higher)
PEAK_LIMIT = 32 << 20

RUNNER = r"""
import json, sys, tracemalloc
from pathlib import Path
from gaussrender.data import (load_infos, safe_pickle_load, read_occ3d_labels, read_surroundocc_labels,
                              read_kitti360_labels, read_kitti360_invalid, load_image)
from gaussrender.train.checkpoint import load_checkpoint
from gaussrender.commands._scoring import load_prediction

READERS = {
    "load_infos": load_infos,
    "safe_pickle_load": safe_pickle_load,
    "occ3d": read_occ3d_labels,
    "surroundocc": read_surroundocc_labels,
    "kitti360": read_kitti360_labels,
    "kitti360_invalid": read_kitti360_invalid,
    "prediction": lambda p: load_prediction(Path(p), (200, 200, 16), 18),
    "checkpoint": load_checkpoint,
    "image": load_image,
}
out = []
for name, reader, path in json.loads(Path(sys.argv[1]).read_text()):
    tracemalloc.start()
    try:
        READERS[reader](path)
        result = {"type": None, "mro": [], "msg": ""}
    except BaseException as err:  # record everything, including MemoryError and SystemExit
        result = {"type": type(err).__name__, "mro": [c.__name__ for c in type(err).__mro__], "msg": str(err)[:3000]}
    result.update(name=name, reader=reader, path=path, peak=tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    out.append(result)
Path(sys.argv[2]).write_text(json.dumps(out))
"""


def run_batch(tmp_path: Path, cases: list[tuple[str, str, Path]]) -> list[dict]:
    """Load every (name, reader, path) in one child process; return its records."""
    spec, result = tmp_path / "cases.json", tmp_path / "results.json"
    spec.write_text(json.dumps([(n, r, str(p)) for n, r, p in cases]))
    src = str(Path(gaussrender.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(spec), str(result)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode >= 0, f"loader process killed by signal {-proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(result.read_text())
    assert len(records) == len(cases)
    return records


def assert_refused_by_name(records: list[dict], marker: Path | None = None) -> None:
    problems = []
    for r in records:
        label = f"[{r['reader']}] {r['name']}"
        if r["type"] is None:
            problems.append(f"{label}: accepted")
        elif "DataFileError" not in r["mro"]:
            problems.append(f"{label}: {r['type']} instead of DataFileError: {r['msg'][:300]}")
        elif r["path"] not in r["msg"]:
            problems.append(f"{label}: message does not name the file: {r['msg'][:300]}")
        if r["peak"] > PEAK_LIMIT:
            problems.append(f"{label}: allocated {r['peak']} bytes before refusing")
    assert not problems, "\n".join(problems)
    if marker is not None:
        assert not marker.exists(), f"a payload ran: {marker} was created"


def _write(folder: Path, files: dict[str, bytes], suffix: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, (name, data) in enumerate(files.items()):
        paths[name] = folder / f"case{i:02d}{suffix}"
        paths[name].write_bytes(data)
    return paths


def _pickle_cases(root: Path, marker: Path) -> list[tuple[str, str, Path]]:
    paths = _write(
        root / "pkl",
        {**hostile_pickles(marker), "object dtype trick (crashes pickle.load)": object_dtype_trick()},
        ".pkl",
    )
    return [(name, reader, p) for name, p in paths.items() for reader in ("load_infos", "safe_pickle_load")]


def _label_cases(root: Path, marker: Path) -> list[tuple[str, str, Path]]:
    shape = OCC3D_NUSCENES.shape
    npys = hostile_label_files(shape, marker)
    ok = npy_bytes(np.zeros(shape, np.uint8))
    cases = []
    # Occ3D labels and predictions: .npz archives
    npzs = {
        "empty": b"",
        "random bytes": bytes(np.random.default_rng(2).integers(0, 256, 2000, dtype=np.uint8)),
        "truncated zip": npz_bytes({"semantics": ok})[:300],
        "missing keys": npz_bytes({"other": ok}),
        "corrupt deflate stream": _corrupt_member(
            npz_bytes({"semantics": ok, "mask_lidar": ok, "mask_camera": ok, "pred": ok})
        ),
        # a few hundred bytes whose headers claim 2**54 bytes each (the reported 93 GiB case, bigger)
        "tiny file, huge claimed shape": npz_bytes(
            {
                k: npy_header_only("|u1", (1 << 18, 1 << 18, 1 << 18))
                for k in ("semantics", "mask_lidar", "mask_camera", "pred")
            }
        ),
        **{
            f"member: {n}": npz_bytes({k: v for k in ("semantics", "mask_lidar", "mask_camera")})
            for n, v in npys.items()
        },
    }
    for name, p in _write(root / "occ3d", npzs, ".npz").items():
        cases += [(name, "occ3d", p), (name, "prediction", p)]
    # SurroundOcc [N, 4] and KITTI-360 [256, 256, 32] label files: .npy
    for name, p in _write(root / "socc", hostile_label_files((1, 4), marker), ".npy").items():
        cases.append((name, "surroundocc", p))
    too_many = root / "socc" / "rows.npy"
    too_many.write_bytes(npy_header_only("<i8", (200 * 200 * 16 + 1, 4)))
    cases.append(("more rows than voxels", "surroundocc", too_many))
    for name, p in _write(root / "kitti", hostile_label_files(SSCBENCH_KITTI360.shape, marker), ".npy").items():
        cases.append((name, "kitti360", p))
    # a sparse 64 GiB .invalid file: refused from its size, never read
    invalid = root / "kitti" / "huge.invalid"
    with invalid.open("wb") as f:
        f.truncate(64 << 30)
    cases.append(("64 GiB invalid mask", "kitti360_invalid", invalid))
    return cases


def _corrupt_member(data: bytes) -> bytes:
    """Flip bytes inside the first member's compressed stream (after its local header)."""
    raw = bytearray(data)
    for i in range(120, 400, 7):
        raw[i] ^= 0x5A
    return bytes(raw)


def _checkpoint_cases(root: Path, marker: Path) -> list[tuple[str, str, Path]]:
    import torch

    good = _torch_bytes({"model": {"w": torch.zeros(2)}, "step": 1})
    legacy = {"model": {}, "rng": {"numpy": np.random.get_state()}}  # numpy arrays: a code-capable pickle
    files = {
        "REDUCE payload in a torch zip": malicious_checkpoint(marker),
        "numpy RNG tuple (pre-weights_only checkpoint)": _torch_bytes(legacy),
        "truncated": good[:200],
        "empty": b"",
        "random bytes": bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)),
        "a raw pickle with os.system": hostile_pickles(marker)["GLOBAL+REDUCE os.system"],
        "top level is a list": _torch_bytes([torch.zeros(1)]),
    }
    return [(n, "checkpoint", p) for n, p in _write(root / "ckpt", files, ".pt").items()]


def _torch_bytes(obj) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _image_cases(root: Path) -> list[tuple[str, str, Path]]:
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 4)).save(buf, format="PNG")
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    huge = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    files = {
        "empty": b"",
        "random bytes": bytes(np.random.default_rng(4).integers(0, 256, 500, dtype=np.uint8)),
        "truncated png": buf.getvalue()[:40],
        "header claims 100000 x 100000": huge,
    }
    return [(n, "image", p) for n, p in _write(root / "img", files, ".png").items()]


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> tuple[dict[str, list[dict]], Path]:
    """Every hostile file of every family, loaded in ONE child process; records per family."""
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "PWNED"
    families = {
        "pickle": _pickle_cases(root, marker),
        "labels": _label_cases(root, marker),
        "checkpoint": _checkpoint_cases(root, marker),
        "image": _image_cases(root),
    }
    flat = [(f"{family}|{name}", reader, p) for family, cases in families.items() for name, reader, p in cases]
    records = run_batch(root, flat)
    out: dict[str, list[dict]] = {family: [] for family in families}
    for r in records:
        family, r["name"] = r["name"].split("|", 1)
        out[family].append(r)
    return out, marker


def test_hostile_pickles_are_refused_without_running_or_crashing(refused):
    records, marker = refused
    assert len(records["pickle"]) > 100
    assert_refused_by_name(records["pickle"], marker)
    by_name = {r["name"]: r["msg"] for r in records["pickle"] if r["reader"] == "safe_pickle_load"}
    assert "refusing to unpickle os.system" in by_name["GLOBAL+REDUCE os.system"]
    assert "refusing numpy dtype 'O8'" in by_name["object dtype with cleared flags (segfault trick)"]
    assert "refusing dtype state" in by_name["f8 dtype whose state claims object flags"]
    assert "does not match" in by_name["huge shape, 8 data bytes"]
    assert "refusing BUILD" in by_name["BUILD on the numpy.dtype factory"]
    assert "nested more than" in by_name["deeply nested lists"]


def test_the_object_dtype_trick_is_a_real_attack(tmp_path, refused):
    """The generator's flag trick does crash a trusting loader (so the refusal above matters)."""
    path = tmp_path / "trick.pkl"
    path.write_bytes(object_dtype_trick())
    code = "import pickle, sys; a = pickle.load(open(sys.argv[1], 'rb')); print(repr(a))"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode >= 0:
        pytest.skip(f"this numpy no longer crashes on the trick (rc {proc.returncode}); its refusal is tested anyway")
    records, _ = refused
    trick = [r for r in records["pickle"] if r["name"].startswith("object dtype trick")]
    assert len(trick) == 2 and all("refusing numpy dtype 'O8'" in r["msg"] for r in trick)


def test_real_pickles_of_plain_arrays_still_load_in_every_protocol(tmp_path):
    import pickle

    data = {"infos": [], "a": np.arange(6, dtype="<i4").reshape(2, 3), "s": np.float32(1.5), "b": b"\x00\xff"}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        out = gaussrender.data.safe_pickle_load(path)
        np.testing.assert_array_equal(out["a"], data["a"])
        assert out["s"] == np.float32(1.5) and out["b"] == b"\x00\xff", protocol


def test_hostile_label_and_prediction_files_are_refused_before_allocating(refused):
    records, marker = refused
    assert_refused_by_name(records["labels"], marker)
    msgs = {(r["reader"], r["name"]): r["msg"] for r in records["labels"]}
    huge = "expected shape (200, 200, 16), got (262144, 262144, 262144)"
    assert huge in msgs[("occ3d", "tiny file, huge claimed shape")]
    assert huge in msgs[("prediction", "tiny file, huge claimed shape")]
    assert "has more than 640000 rows" in msgs[("surroundocc", "more rows than voxels")]
    assert "refusing dtype object" in msgs[("kitti360", "object array (pickle inside)")]
    assert "truncated" in msgs[("kitti360", "truncated data")]
    assert "expected shape (200, 200, 16), got (200, 200)" in msgs[("occ3d", "member: wrong shape")]
    assert (
        "64 GiB" not in msgs[("kitti360_invalid", "64 GiB invalid mask")]
        and "expected 262144 bytes" in msgs[("kitti360_invalid", "64 GiB invalid mask")]
    )


def test_malicious_and_corrupt_checkpoints_are_refused(refused):
    records, marker = refused
    assert_refused_by_name(records["checkpoint"], marker)
    msgs = {r["name"]: r["msg"] for r in records["checkpoint"]}
    assert "refusing checkpoint content" in msgs["REDUCE payload in a torch zip"]
    assert "refusing checkpoint content" in msgs["numpy RNG tuple (pre-weights_only checkpoint)"]


def test_corrupt_images_are_named(refused):
    records, _ = refused
    assert_refused_by_name(records["image"])
