"""numformer.blas: naming the OpenBLAS kernels NumPy runs, and measuring which are fastest.

The measurement's speeds are not asserted (no timing in tests); what is: each kernel family is
measured in its own process and reported under the name OpenBLAS gives it, a family that
resolves to kernels already measured is not counted twice, a failed measurement drops out
instead of raising, and the choice only moves off OpenBLAS's pick for a clear gain.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from numformer import blas
from numformer.cli import main


def test_a_family_openblas_does_not_know_is_measured_as_its_own_pick():
    default, best, rates = blas.fastest_blas_core(["NoSuchCore"])
    if blas.openblas() is None:  # NumPy without an OpenBLAS we can ask: nothing to choose
        assert (default, best, rates) == (None, None, {})
        assert blas.blas_core() is None
        return
    # OpenBLAS falls back to the core it detects: one family, measured once, under the name
    # OpenBLAS gives it, which is the one this process runs unless OPENBLAS_CORETYPE forced it.
    assert list(rates) == [default] == [best]
    assert rates[default] > 0
    assert default == blas.blas_core() or os.environ.get("OPENBLAS_CORETYPE")


def test_a_failed_measurement_drops_out(monkeypatch):
    monkeypatch.setattr(blas, "_PROBE", "raise SystemExit(3)  # {shapes} {package_parent}")
    assert blas.fastest_blas_core(["Haswell"]) == (None, None, {})


@pytest.mark.parametrize("candidates", ["Haswell", ["Has well"], [3], ["Zen; rm"]])
def test_bad_candidates_are_named(candidates):
    with pytest.raises(ValueError, match="candidates must be a sequence of OpenBLAS core names"):
        blas.fastest_blas_core(candidates)


rates = st.dictionaries(
    st.sampled_from(["SkylakeX", "Haswell", "Zen", "Cooperlake"]), st.floats(1.0, 200.0), min_size=1
)


@given(rates, st.data())
def test_pick_core_moves_off_the_default_only_for_a_clear_gain(measured, data):
    default = data.draw(st.sampled_from(sorted(measured)))
    chosen = blas.pick_core(measured, default)
    if chosen == default:
        assert max(measured.values()) <= measured[default] * 1.02
    else:
        assert measured[chosen] == max(measured.values()) > measured[default] * 1.02


def test_pick_core_needs_the_default_measured():
    with pytest.raises(ValueError, match="default 'Zen' must be one of the measured cores"):
        blas.pick_core({"Haswell": 100.0}, "Zen")


def test_the_blas_command_names_the_faster_kernels(monkeypatch, capsys):
    measured = ("SkylakeX", "Haswell", {"SkylakeX": 100.0, "Haswell": 108.0})
    monkeypatch.setattr(blas, "blas_core", lambda: "SkylakeX")
    monkeypatch.setattr(blas, "fastest_blas_core", lambda: measured)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert main(["blas"]) == 0
    out = capsys.readouterr().out
    assert "NumPy runs OpenBLAS's SkylakeX kernels" in out
    assert "Haswell is 8% faster here than SkylakeX" in out and "export OPENBLAS_CORETYPE=Haswell" in out
    assert main(["blas", "--best"]) == 0
    assert capsys.readouterr().out == "Haswell\n"
    # a core forced to kernels the probe did not time: the gain is against OpenBLAS's pick
    monkeypatch.setattr(blas, "blas_core", lambda: "Sandybridge")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Sandybridge")
    assert main(["blas"]) == 0
    out = capsys.readouterr().out
    assert "(OPENBLAS_CORETYPE=Sandybridge)" in out and "Haswell is 8% faster here than SkylakeX" in out
    monkeypatch.setattr(blas, "blas_core", lambda: "Haswell")
    assert main(["blas"]) == 0
    out = capsys.readouterr().out
    assert "Haswell is the fastest here: nothing to change." in out and "export" not in out
