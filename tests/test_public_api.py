import importlib

import pytest

PACKAGES = [
    "ppmodels",
    "ppmodels.data",
    "ppmodels.nn",
    "ppmodels.models",
    "ppmodels.infer",
    "ppmodels.plots",
    "ppmodels.toolbox",
    "ppmodels.probability",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_imports_and_all_is_sorted_and_unique(name):
    module = importlib.import_module(name)
    names = module.__all__
    assert len(names) == len(set(names)), f"{name}.__all__ has duplicates"
    assert list(names) == sorted(names), f"{name}.__all__ is not sorted"
    for attr in names:
        assert getattr(module, attr) is not None
