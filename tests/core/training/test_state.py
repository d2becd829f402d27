"""The training state file: states written before the ``training`` package still load."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from fcanet_core.training.data import View
from fcanet_core.training.state import STATE_FORMAT, read_train_state


def test_a_state_pickled_with_the_old_module_names_loads(tmp_path, monkeypatch):
    old_module = types.ModuleType("fcanet_core.train_data")
    old_module.View = View
    monkeypatch.setitem(sys.modules, "fcanet_core.train_data", old_module)
    monkeypatch.setattr(View, "__module__", "fcanet_core.train_data")
    view = View(1.25, 3, 4, True)
    path = tmp_path / "last.pt"
    torch.save({"format": STATE_FORMAT, "ranks": [{"itis": {"views": [view]}}]}, path)
    assert b"fcanet_core.train_data" in path.read_bytes()
    monkeypatch.undo()
    with pytest.raises(ModuleNotFoundError):
        torch.load(path, weights_only=False)
    [loaded] = read_train_state(path)["ranks"][0]["itis"]["views"]
    assert type(loaded) is View and loaded == view


def test_other_files_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not a training state"):
        read_train_state(path)
