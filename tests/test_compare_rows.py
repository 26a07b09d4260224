"""compare takes what mcmc takes (keyword data, a model's module), keeps every method's answer
when another fails, and names who drew each MCMC row (this library's sampler or Pyro's own)."""

import json

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppmodels.infer import compare
from ppmodels.infer.comparison.guides import GuideMethod
from ppmodels.infer.comparison.kernels import KernelMethod

SMALL = dict(num_samples=60, warmup_steps=60, vi_epochs=100, num_vi_samples=300, mcmc_compile="graph", seed=2)


def positional(x, y):
    slope = pyro.sample("slope", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(slope * x, 0.5), obs=y)


def keyword(*, x, y):
    positional(x, y)


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(25, generator=g)
    return x, 0.7 * x + 0.5 * torch.randn(25, generator=g)


def test_keyword_data_give_what_positional_data_give():
    x, y = _data()
    by_position = compare(positional, (x, y), **SMALL)
    by_keyword = compare(keyword, {"x": x, "y": y}, test={"x": x, "y": y}, **SMALL)
    assert torch.equal(by_position.method("nuts").samples["slope"], by_keyword.method("nuts").samples["slope"])
    for name in ("meanfield", "fullrank"):  # the Laplace start runs the model with its keywords bound: an ulp apart
        a, b = by_position.method(name).samples["slope"], by_keyword.method(name).samples["slope"]
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
    assert by_keyword.method("nuts").predictive_log_likelihood is not None


def _fails(name, message):
    kind = GuideMethod if name in ("meanfield", "fullrank") else KernelMethod
    real = kind.run

    def run(self, problem, settings):
        if self.name == name:
            raise RuntimeError(message)
        return real(self, problem, settings)

    return kind, "run", run


def test_a_method_that_fails_is_a_row_with_its_error_and_the_others_stand(monkeypatch):
    monkeypatch.setattr(*_fails("fullrank", "injected: the guide could not train"))
    x, y = _data()
    with pytest.warns(RuntimeWarning, match=r"compare: fullrank failed \(RuntimeError: injected.*the other methods"):
        result = compare(positional, (x, y), **SMALL)
    assert [m.name for m in result.methods] == ["meanfield", "nuts"]
    assert result.reference == "nuts" and "w1_to_reference" in result.rows()[0]
    assert result.failed == [
        {"method": "fullrank", "kind": "vi", "seconds": result.failed[0]["seconds"], "error": result.failed[0]["error"]}
    ]
    assert "injected: the guide could not train" in result.failed[0]["error"]
    rows = {r["method"]: r for r in result.summary()}
    assert rows["fullrank"]["error"].startswith("RuntimeError: injected")
    assert "- fullrank: RuntimeError: injected" in result.to_markdown().split("Failed")[1]
    assert json.loads(result.to_json())["failed"][0]["method"] == "fullrank"


def test_a_failed_reference_leaves_the_guides_without_distances(monkeypatch):
    """MCMC runs first; its failure must not take the guides' answers with it, nor a guide's
    failure MCMC's (before, an LKJ model's guide failing had lost NUTS's draws)."""
    monkeypatch.setattr(*_fails("nuts", "injected: the sampler failed"))
    x, y = _data()
    with pytest.warns(RuntimeWarning, match="compare: nuts failed"):
        result = compare(positional, (x, y), **SMALL)
    assert result.reference is None and [m.name for m in result.methods] == ["meanfield", "fullrank"]
    assert "w1_to_reference" not in result.rows()[0] and not result.disagreements()


def test_when_every_method_fails_compare_raises_with_each_reason(monkeypatch):
    monkeypatch.setattr(*_fails("meanfield", "injected: first"))
    x, y = _data()
    with pytest.warns(RuntimeWarning, match="compare: meanfield failed"):
        with pytest.raises(
            RuntimeError, match=r"every method failed.*meanfield: RuntimeError: injected: first"
        ) as error:
            compare(positional, (x, y), guides=("meanfield",), mcmc=(), **SMALL)
    assert "injected: first" in str(error.value.__cause__)


def test_pyros_own_nuts_is_a_kernel_of_compare_and_each_row_names_its_sampler():
    x, y = _data()
    result = compare(positional, (x, y), guides=(), mcmc=("nuts", "pyro-nuts"), **SMALL)
    samplers = {r["method"]: r["sampler"] for r in result.summary()}
    assert samplers == {"nuts": "ppmodels (graph)", "pyro-nuts": "Pyro's MCMC (jit)"}
    assert result.method("pyro-nuts").mcmc.engine == "pyro"
    assert "| sampler |" in result.to_markdown()


def test_the_command_runs_pyros_nuts(tmp_path):
    from ppmodels.cli import main

    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--problem",
            "linreg",
            "--guides",
            "none",
            "--mcmc",
            "nuts,pyro-nuts",
            "--num-samples",
            "60",
            "--warmup",
            "60",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = (out / "comparison.md").read_text()
    assert "Pyro's MCMC (eager)" in report and "ppmodels (" in report
