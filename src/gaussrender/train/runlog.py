"""Run logs: one JSON object per line in ``RUN/log.jsonl`` plus TensorBoard when installed.

Only rank 0 writes. TensorBoard (``pip install 'gaussrender[log]'``) gets every numeric
field as a scalar named ``<kind>/<field>``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

from .._io import atomic_write_text

__all__ = ["RunLogger", "read_jsonl"]


class RunLogger:
    """Append records to ``<run_dir>/log.jsonl`` (and TensorBoard) from the main process.

    Args:
        run_dir: the run directory.
        enabled: False on non-main ranks (then every call is a no-op).
        tensorboard: try to open a TensorBoard writer in ``<run_dir>/tb``.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                pass
            else:
                self._tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, kind: str, step: int, **fields: Any) -> None:
        """Write one record ``{"kind", "step", "time", **fields}``."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": int(step), "time": time.time()}
        for key, value in fields.items():
            if hasattr(value, "item"):
                value = value.item()
            record[key] = value
        with self.path.open("a") as f:
            # NaN/inf are written as strings so that the file stays strict JSON
            f.write(
                json.dumps(
                    {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
                )
                + "\n"
            )
        if self._tb is not None:
            for key, value in record.items():
                if (
                    key not in ("kind", "step", "time")
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def truncate(self, step: int) -> int:
        """Drop the records after ``step`` (a resumed run's checkpoint), atomically.

        A run killed after its last checkpoint logged steps that the resumed run logs again;
        without this the log would hold them twice. Lines that are not JSON (a record cut
        short by the kill) are dropped with a warning naming the file and line.

        Returns:
            The number of lines dropped.
        """
        if not self.enabled:
            return 0
        if self._tb is not None:
            # TensorBoard hides the events after the resume point itself
            self._tb.close()
            self._tb = type(self._tb)(str(Path(self.path.parent) / "tb"), purge_step=step + 1)
        if not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record_step = int(record["step"])
            except (ValueError, TypeError, KeyError):
                warnings.warn(
                    f"{self.path}:{number}: dropping a line that is not a log record "
                    "(cut short when the run was stopped?)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                dropped += 1
                continue
            if record_step > step:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        return dropped

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_jsonl(path: str | Path, kind: str | None = None) -> list[dict]:
    """Records of a ``log.jsonl`` file, optionally only those of one ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"log file not found: {path}")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]
