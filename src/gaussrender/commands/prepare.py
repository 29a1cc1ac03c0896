"""Write the info files training reads, from the official downloads.

``gaussrender prepare nuscenes`` reads the official nuScenes tables
(``<dataroot>/<version>/{scene,sample,sample_data,calibrated_sensor,ego_pose,sensor}.json``,
and ``lidarseg.json`` when present) and writes one JSON info file per split into ``--out``:
``<prefix>_train.json`` and ``<prefix>_val.json`` (calibration, poses, image and LiDAR paths
relative to the nuScenes root; :func:`gaussrender.data.write_infos_json`). The scenes of each
split come from ``--splits``, Occ3D's ``annotations.json`` (its ``<split>_split`` scene
lists); ``v1.0-mini`` has its official split built in; without either, every sample goes into
``<prefix>_all.json``. It then prints the ``--set`` arguments that point a config at them:
info paths relative to ``data.root`` follow it, so writing them into the labels' root (the
default ``--out`` for Occ3D) needs only ``--set data.root=...``.

``gaussrender prepare kitti360`` checks the official KITTI-360 calibration
(``calibration/perspective.txt``, ``calibration/calib_cam_to_velo.txt``) and copies it into
``<root>/calibration/``, where the SSCBench-KITTI360 reader looks (without it the reader
uses the published values); it prints the camera matrix and pose it will use.

Examples:
    gaussrender prepare nuscenes --dataroot /data/nuscenes --version v1.0-trainval \\
        --splits /data/occ3d-nuscenes/annotations.json --out /data/occ3d-nuscenes
    gaussrender prepare kitti360 --calibration /data/KITTI-360/calibration --root /data/sscbench-kitti360
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HELP = "write info files from the official nuScenes tables (or install KITTI-360's calibration) for training"

#: The official nuScenes-mini split (nuscenes-devkit's ``mini_train`` / ``mini_val``).
MINI_SPLITS = {
    "train": (
        "scene-0061",
        "scene-0553",
        "scene-0655",
        "scene-0757",
        "scene-0796",
        "scene-1077",
        "scene-1094",
        "scene-1100",
    ),
    "val": ("scene-0103", "scene-0916"),
}
#: Largest calibration file read, bytes (KITTI-360's are under 2 kB; the reader's limit).
MAX_CALIBRATION_BYTES = 1 << 20
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    nus = sub.add_parser("nuscenes", help="info files from the official nuScenes tables")
    nus.add_argument("--dataroot", required=True, type=Path, help="nuScenes root holding <version>/ (and samples/)")
    nus.add_argument(
        "--version",
        "--nuscenes-version",
        dest="version",
        default="v1.0-trainval",
        help="tables folder (default v1.0-trainval)",
    )
    nus.add_argument("--out", required=True, type=Path, help="folder to write the info files into (e.g. data.root)")
    nus.add_argument(
        "--splits",
        type=Path,
        default=None,
        help="Occ3D's annotations.json: its train_split / val_split scene lists (v1.0-mini: built in)",
    )
    nus.add_argument("--prefix", default="gaussrender_infos", help="file names <prefix>_<split>.json")
    kitti = sub.add_parser("kitti360", help="install KITTI-360's calibration where the reader looks")
    kitti.add_argument(
        "--calibration", required=True, type=Path, help="KITTI-360's calibration/ folder (perspective.txt, ...)"
    )
    kitti.add_argument("--root", required=True, type=Path, help="SSCBench-KITTI360 root (data.root)")


def _error(message: object) -> int:
    print(f"gaussrender prepare: error: {message}", file=sys.stderr)
    return 2


def _split_scenes(args: argparse.Namespace) -> dict[str, set[str]] | None:
    """Scene names per split: from ``--splits`` (Occ3D's annotations.json), else nuScenes-mini's
    official split, else None (one file with every sample)."""
    from ..data.files import DataFileError, read_json

    if args.splits is None:
        return {k: set(v) for k, v in MINI_SPLITS.items()} if args.version == "v1.0-mini" else None
    meta = read_json(args.splits, "split file (Occ3D annotations.json)")
    if not isinstance(meta, dict):
        raise DataFileError(f"{args.splits}: expected a JSON object with '<split>_split' scene lists", args.splits)
    splits = {}
    for name in ("train", "val"):
        scenes = meta.get(f"{name}_split")
        if not isinstance(scenes, list) or not all(isinstance(s, str) for s in scenes):
            raise DataFileError(f"{args.splits}: '{name}_split' must be a list of scene names", args.splits)
        splits[name] = set(scenes)
    return splits


def _nuscenes(args: argparse.Namespace) -> int:
    from ..data import load_nuscenes_tables, write_infos_json

    if not _PREFIX.fullmatch(args.prefix):
        return _error(f"--prefix must be a plain file name ([A-Za-z0-9._-]), got {args.prefix!r}")
    if args.out.exists() and not args.out.is_dir():
        return _error(f"--out {args.out} exists and is not a directory")
    if not (args.dataroot / args.version).is_dir():
        return _error(f"nuScenes tables not found: {args.dataroot / args.version} (--dataroot, --version)")
    samples = load_nuscenes_tables(args.dataroot, args.version)
    splits = _split_scenes(args)
    groups = (
        {"all": samples} if splits is None else {k: [s for s in samples if s.scene in v] for k, v in splits.items()}
    )
    empty = [k for k, v in groups.items() if not v]
    if empty:
        scenes = sorted({s.scene for s in samples})
        return _error(
            f"no sample of {args.dataroot / args.version} belongs to split(s) {empty} "
            f"(its scenes: {', '.join(scenes[:5])}{', ...' if len(scenes) > 5 else ''})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, group in groups.items():
        path = write_infos_json(args.out / f"{args.prefix}_{name}.json", group, version=args.version)
        written[name] = path
        print(f"wrote {path}: {len(group)} samples, {len({s.scene for s in group})} scenes")
    if splits is not None:
        out = args.out.resolve()
        print("train with (info paths relative to data.root follow it):")
        print(
            f"  --set data.root={out} --set data.data_root={args.dataroot.resolve()} "
            f"--set data.train_infos={written['train'].name} --set data.val_infos={written['val'].name}"
        )
    else:
        print("no split given (--splits annotations.json): every sample is in one file")
    return 0


def _kitti360(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np

    from .._io import atomic_write_text
    from ..data import read_kitti360_calibration

    names = ("perspective.txt", "calib_cam_to_velo.txt")
    missing = [n for n in names if not (args.calibration / n).exists()]
    if missing:
        return _error(f"{args.calibration}: missing {', '.join(missing)} (KITTI-360's calibration/ folder)")
    for n in names:  # untrusted files: regular and small before anything reads them
        path = args.calibration / n
        if not path.is_file():
            return _error(f"{path} is not a regular file")
        if path.stat().st_size > MAX_CALIBRATION_BYTES:
            return _error(
                f"{path}: {path.stat().st_size} bytes is not a calibration file (limit {MAX_CALIBRATION_BYTES})"
            )
    if not args.root.is_dir():
        return _error(f"--root directory not found: {args.root}")
    try:
        texts = {n: (args.calibration / n).read_text(encoding="utf-8") for n in names}
    except UnicodeDecodeError as err:
        return _error(f"{args.calibration}: a calibration file is not UTF-8 text ({err.reason} at byte {err.start})")
    with tempfile.TemporaryDirectory() as tmp:  # parsed (and refused by name) before anything is written
        for n, text in texts.items():
            atomic_write_text(Path(tmp) / "calibration" / n, text)
        read_kitti360_calibration(tmp)
    for n, text in texts.items():
        atomic_write_text(args.root / "calibration" / n, text)
    calib = read_kitti360_calibration(args.root)
    with np.printoptions(precision=6, suppress=True):
        print(f"wrote {args.root / 'calibration'}: the SSCBench-KITTI360 reader now uses")
        print(f"  K (pixels of 1408 x 376):\n{calib.intrinsics}")
        print(f"  cam_from_velo:\n{calib.cam_from_velo}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..data.files import DataFileError

    try:
        return _nuscenes(args) if args.source == "nuscenes" else _kitti360(args)
    except (FileNotFoundError, DataFileError, OSError, ValueError) as err:
        return _error(err)
