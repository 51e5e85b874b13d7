"""Components stay thin and documented; a bad parameter ends the step with one clear line."""

import importlib
import inspect
from pathlib import Path

import pytest
from kfp.dsl import Dataset

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
NAMES = sorted(p.name for p in COMPONENTS.iterdir() if (p / "component.py").is_file())


def _component(name):
    return getattr(importlib.import_module(f"components.{name}.component"), name)


@pytest.mark.parametrize("name", NAMES)
def test_readme_lists_every_parameter(name):
    readme = (COMPONENTS / name / "README.md").read_text()
    func = _component(name).python_func
    for parameter in inspect.signature(func).parameters:
        assert f"`{parameter}`" in readme, f"{name}/README.md does not document {parameter}"


@pytest.mark.parametrize("name", NAMES)
def test_component_is_thin(name):
    source = inspect.getsource(_component(name).python_func)
    body = [line for line in source.splitlines() if line.strip() and not line.strip().startswith(("#", '"""'))]
    assert len(body) < 45, f"{name} holds logic that belongs in the library"
    assert "from visioncompress" in source and "with stage(" in source


def test_bad_parameter_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _component("data_prep").python_func(dataset=Dataset(uri=str(tmp_path / "out")), insize=4)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "visioncompress: data_prep: insize=4 is not allowed; expected an integer >= 8"
    assert not (tmp_path / "out").exists()
