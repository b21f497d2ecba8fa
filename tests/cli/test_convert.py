import os
import stat

import pytest
import torch

from depth_anything_v2 import load_model
from depth_anything_v2.cli import main


def _equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_convert_round_trip_reference_hf_reference(tmp_path, capsys, make_model):
    model = make_model("tiny", max_depth=20.0)
    torch.save(model.state_dict(), tmp_path / "depth_anything_v2_metric_hypersim_vits.pth")
    assert main(["convert", str(tmp_path / "depth_anything_v2_metric_hypersim_vits.pth"), str(tmp_path / "hf")]) == 0
    assert "hf format, encoder tiny, metric, max_depth 20 m" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    hf = load_model(tmp_path / "hf")
    assert hf.max_depth == 20.0 and _equal(hf, model)
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.pth")]) == 0
    raw = torch.load(tmp_path / "back.pth", weights_only=True)
    assert set(raw) == set(model.state_dict()) and all(torch.equal(raw[k], v) for k, v in model.state_dict().items())
    assert _equal(load_model(tmp_path / "back.safetensors"), model)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_convert_outputs_get_the_usual_modes(tmp_path, make_model):
    torch.save(make_model("tiny").state_dict(), tmp_path / "m.pth")
    old = os.umask(0o022)
    try:
        assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "hf")]) == 0
        assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "m.safetensors")]) == 0
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE(os.stat(tmp_path / p).st_mode) for p in ("hf", "hf/model.safetensors", "m.safetensors")}
    assert modes == {"hf": 0o755, "hf/model.safetensors": 0o644, "m.safetensors": 0o644}  # not 0700 / 0600


def test_convert_errors(tmp_path, capsys, make_model):
    torch.save(make_model("tiny").state_dict(), tmp_path / "m.pth")
    assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "m.pth")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "x.bin"), "--to", "reference"]) == 2
    assert "expected DST ending in .pth" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    assert main(["convert", str(tmp_path / "bad.pth"), str(tmp_path / "out")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "o.pth"), "--encoder", "vits"]) == 2
    assert "encoder 'tiny'" in capsys.readouterr().err


def test_models_lists_names_licences_and_cache_state(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("vits", "vitb", "vitl", "metric-hypersim-vits", "metric-vkitti-vitl"):
        assert f"\n{name} " in out
    assert "Apache-2.0" in out and "CC-BY-NC-4.0" in out
    assert "depth-anything/Depth-Anything-V2-Small/depth_anything_v2_vits.pth" in out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("predict", "eval", "convert", "models"):
        assert cmd in out


def test_version_subcommand_usage_and_single_defaults(capsys):
    from depth_anything_v2 import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"depth-anything {__version__}"
    # An unknown option of a sub-command shows that sub-command's usage, not the top-level one.
    with pytest.raises(SystemExit) as e:
        main(["convert", "a.pth", "b.pth", "--nope"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: depth-anything convert ")
    assert "depth-anything convert: error: unrecognized arguments: --nope" in err
    # Each default is said once.
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default 518)" in out and "(default: " not in out


def test_picking_a_published_model_shows_its_licence_and_offline_error(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    from depth_anything_v2.cli.common import licence_notice

    assert licence_notice("vits").endswith("weights licence: Apache-2.0")
    assert "CC-BY-NC-4.0" in licence_notice("metric-vkitti-vitl")
    assert licence_notice("my.pth") is None
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"")
    # Exit code 3 (model not available), the same for every command; the message names the `hf` command.
    assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--model", "vitb"]) == 3
    err = capsys.readouterr().err
    assert "model vitb: relative depth (disparity), Base; weights licence: CC-BY-NC-4.0" in err
    assert "`hf download depth-anything/Depth-Anything-V2-Base depth_anything_v2_vitb.pth`" in err
    assert "--weights PATH" in err and "huggingface-cli" not in err
    assert main(["convert", "vitb", str(tmp_path / "b.pth")]) == 3
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
