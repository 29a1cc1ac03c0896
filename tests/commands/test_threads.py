"""Every command that renders or trains takes ``--threads`` (docs/performance.md#cpu-threads)."""

import pytest
import torch

from gaussrender.cli import build_parser, main
from gaussrender.commands._checks import apply_threads

RENDERING = ("train", "predict", "eval", "view", "demo")


@pytest.mark.parametrize("command", RENDERING)
def test_threads_option_everywhere(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    (threads,) = [a for a in sub._actions if "--threads" in a.option_strings]
    assert threads.type is int and "threads" in threads.help


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "tiny_synthetic_std", "--run-dir", "RUN"],
        ["predict", "--config", "tiny_synthetic_std", "--checkpoint", "CKPT", "--out", "OUT"],
        ["eval", "--benchmark", "kitti360", "--gt", "GT", "--pred", "PRED"],
    ],
)
def test_bad_threads_is_one_named_line(tmp_path, capsys, argv):
    (tmp_path / "PRED").mkdir()
    (tmp_path / "CKPT").write_bytes(b"")
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    assert main([*argv, "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: --threads must be in [1, 1024], got 0" in err[0]


def test_apply_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert apply_threads(None) is None and torch.get_num_threads() == before
        assert apply_threads(2) is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
