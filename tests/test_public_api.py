import importlib

import pytest

PACKAGES = [
    "ppmodels",
    "ppmodels.data",
    "ppmodels.nn",
    "ppmodels.models",
    "ppmodels.infer",
    "ppmodels.infer.comparison",
    "ppmodels.infer.density",
    "ppmodels.infer.diagnostics",
    "ppmodels.infer.graphs",
    "ppmodels.infer.program",
    "ppmodels.infer.sampling",
    "ppmodels.infer.training",
    "ppmodels.infer.vi",
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


def test_only_the_trained_parameters_unit_reads_pyros_parameter_store():
    """Pyro's global parameter store has one reader in ppmodels (issue 20): a second one is
    where a run would see another run's parameters."""
    import ast
    from pathlib import Path

    import ppmodels

    readers = []
    for path in Path(ppmodels.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("get_param_store", "_PYRO_PARAM_STORE"):
                readers.append(path.name)
    assert set(readers) == {"params.py"}, readers


def test_fit_options_are_one_frozen_value_that_checks_the_rules_between_options():
    import dataclasses

    from ppmodels.infer.training.options import FitOptions

    options = FitOptions(epochs=3, compile="graph")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.epochs = 4
    with pytest.raises(ValueError, match="validate='always'.*compile"):
        FitOptions(compile="graph", validate="always")
    with pytest.raises(TypeError, match="`kwargs` must be a dict"):
        FitOptions(kwargs=[1])
