"""`gaussrender train --print-config`: every value marked with its source (file, --set, default),
the output still a YAML config, and the render loss's effective options listed."""

import dataclasses
import re

import yaml

import gaussrender as gr
from gaussrender.cli import main
from gaussrender.train.config import config_to_dict, load_config


def _print(capsys, *argv):
    assert main(["train", "--config", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


def test_each_value_says_where_it_came_from_and_the_output_loads_back(capsys):
    overrides = ["--set", "optim.lr=1e-4", "--set", "loss.render_kwargs.bev_size=200"]
    out = _print(capsys, "tpvformer_occ3d_render", *overrides)
    cfg = load_config("tpvformer_occ3d_render", ["optim.lr=1e-4", "loss.render_kwargs.bev_size=200"])
    assert yaml.safe_load(out) == config_to_dict(cfg)  # comments only: still the config
    lines = out.splitlines()
    assert "  lr: 0.0001  # --set" in lines
    assert "  render: true  # file" in lines and "  name: tpvformer  # file" in lines
    assert "  seed: 0  # default" in lines and "  ce_weight: 10.0  # default" in lines
    assert "    bev_size: 200  # --set" in lines
    # where the info files are read: relative to data.root
    assert "  train_infos: bevdetv2-nuscenes_infos_train.pkl  # file; read from data/occ3d-nuscenes/" in out
    assert any(x.startswith("    camera_weights: [0.25") and x.endswith("# file") for x in lines)
    # every leaf of the config carries a source
    body = [x for x in lines if not x.startswith("#") and not x.rstrip().endswith(":")]
    assert body and all(re.search(r"  # (file|--set|default)(; read from .*)?$", x) for x in body)


def test_the_render_losss_effective_options_are_listed(capsys):
    out = _print(
        capsys, "tpvformer_occ3d_render", "--set", "loss.render_weight=5", "--set", "loss.render_kwargs.cull=footprint"
    )
    found = re.findall(r"^#   (\w+): (.*?)  # (.*)$", out, flags=re.M)
    options = {name: (value, why) for name, value, why in found}
    assert set(options) == {f.name for f in dataclasses.fields(gr.RenderLossOptions)}
    assert options["weight"] == ("5.0", "loss.render_weight (--set)")
    assert options["cull"] == ("footprint", "loss.render_kwargs (--set)")
    assert options["camera_weights"][1] == "loss.render_kwargs (file)"
    assert options["bev_size"] == ("400", "GaussRenderLoss default")
    assert options["camera_strategy"][1] == "GaussRenderLoss default: the grid's, 'sensor'"
    assert options["on_nan"][0] == "raise"
    assert "(built;" in out
    # a config without the render loss says so
    assert "not built: loss.render is false" in _print(capsys, "tpvformer_occ3d_std")
