"""The canary: every torch and Pyro internal the compiled paths use exists and behaves on the
torch and Pyro installed (ppmodels.infer.graphs.internals lists them). Seconds, every CI run."""

import pytest
import torch

from ppmodels.infer.graphs.internals import INTERNALS, check_all, expected


@pytest.mark.parametrize("internal", INTERNALS, ids=[i.name.split(" ")[0] for i in INTERNALS])
def test_each_internal_the_compiled_paths_use_exists_and_behaves(internal):
    assert internal.used_by and internal.without  # it says who uses it and what happens without it
    if expected(internal):
        internal.check()  # raises, naming what moved, where torch or Pyro changed it
    else:  # an older supported torch without it: the code leaves inductor's default, as `without` says
        with pytest.raises((AttributeError, KeyError)):
            internal.check()


def test_a_missing_internal_is_reported_by_name(monkeypatch):
    import torch._inductor.compile_fx

    before = {name for name, why in check_all().items() if why is not None}  # none, on a torch of today
    monkeypatch.delattr(torch._inductor.compile_fx, "compile_fx_inner")
    found = check_all()
    assert found["torch._inductor.compile_fx.compile_fx_inner"] is not None
    assert {name for name, why in found.items() if why is not None} == before | {
        "torch._inductor.compile_fx.compile_fx_inner"
    }


def test_the_hook_check_fails_where_a_function_bypasses_the_hook(monkeypatch):
    """The hook's silent direction: ``apply`` kept as a descriptor but not called for a
    Function. The canary sees it, and so does the hook's own probe (once a process)."""
    import ppmodels.infer.graphs.tracing as tracing

    def bypass(cls, *args):
        return cls.forward(None, *args)

    original = torch.autograd.Function.__dict__["apply"]
    monkeypatch.setattr(tracing._Probe, "apply", classmethod(bypass))
    monkeypatch.setattr(tracing, "_HOOK_SEES", None)
    monkeypatch.setattr(tracing, "_WARNED_UNWATCHED", False)
    with pytest.warns(RuntimeWarning, match="cannot watch torch .*one stage"):
        with tracing.watch_custom_backwards() as seen:
            pass
    assert seen == ["?"]  # the caller keeps every backward: the one-stage trace
    assert torch.autograd.Function.__dict__["apply"] is original
