"""Results are never overwritten by accident (``meanfield.files.outputs`` and every command
that writes a file): the same result is left untouched and reported again, another result is
refused with exit 2 and a line naming the difference, ``--overwrite`` replaces it."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from cli.main import main
from meanfield.config import ConfigError, make_config, run_hash
from meanfield.files.outputs import comparison_identity, existing_result, tagged_identity

SIM = ["--M", "20", "--N", "300", "--d", "6", "--n-test", "100", "--t-max", "8", "--dt", "0.5",
       "--n-times", "10", "--seed", "2"]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    res = _run("simulate", *SIM, "-o", tmp / "s.h5")
    assert res.exit_code == 0, res.output
    return tmp / "s.h5"


def test_same_simulation_is_left_untouched_and_reported_again(sim_file):
    before, stamp = _digest(sim_file), sim_file.stat().st_mtime_ns
    first = _run("simulate", *SIM, "-o", sim_file)
    again = _run("simulate", *SIM, "--checkpoint-every", "3", "-o", sim_file)  # same run hash
    for res in (first, again):
        assert res.exit_code == 0, res.output
        assert "left untouched" in res.stderr
    assert first.stdout == again.stdout and first.stdout.startswith("simulation written to")
    assert _digest(sim_file) == before and sim_file.stat().st_mtime_ns == stamp


def test_another_configuration_is_refused_and_overwrite_replaces(sim_file, tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(sim_file.read_bytes())
    before = _digest(path)
    res = _run("simulate", *SIM, "--seed", "5", "-o", path)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "another configuration (seed: 2 there, 5 here)" in res.output
    assert "--overwrite" in res.output and _digest(path) == before
    res = _run("simulate", *SIM, "--seed", "5", "--overwrite", "-o", path)
    assert res.exit_code == 0 and _digest(path) != before


def test_a_foreign_or_truncated_file_is_refused(sim_file, tmp_path):
    for name, content in (("text.h5", b"not hdf5"), ("cut.h5", sim_file.read_bytes()[:5000])):
        path = tmp_path / name
        path.write_bytes(content)
        res = _run("simulate", *SIM, "-o", path)
        assert res.exit_code == 2 and "not a complete meanfield simulation file" in res.output
        assert path.read_bytes() == content


def test_theory_and_compare_reuse_and_refuse(sim_file, tmp_path):
    th = tmp_path / "t.h5"
    assert _run("theory", "--d", "6", "-o", th).exit_code == 0
    res = _run("theory", "--d", "6", "-o", th)
    assert res.exit_code == 0 and "left untouched" in res.stderr
    res = _run("theory", "--d", "7", "-o", th)
    assert res.exit_code == 2 and "d: 6 there, 7 here" in res.output
    out, fig = tmp_path / "c.h5", tmp_path / "f.png"
    first = _run("compare", sim_file, "--json", "-o", out, "--plot", fig)
    again = _run("compare", sim_file, "--json", "-o", out, "--plot", fig)
    assert first.exit_code == again.exit_code == 0
    assert first.stdout == again.stdout and "left untouched" in again.stderr
    assert tagged_identity(fig) == tagged_identity(tmp_path / "f_errors.png") is not None
    res = _run("compare", sim_file, "--no-schedule", "-o", out)
    assert res.exit_code == 2 and "comparison of other inputs" in res.output
    res = _run("compare", sim_file, th, "--plot", fig)  # another comparison's figure
    assert res.exit_code == 2 and "holds another result" in res.output
    other = tmp_path / "mine.png"
    other.write_bytes(b"a picture of my cat")
    assert _run("compare", sim_file, "--plot", other).exit_code == 2
    assert other.read_bytes() == b"a picture of my cat"


def test_strict_rerun_keeps_its_exit_status(sim_file, tmp_path):
    wrong = tmp_path / "wrong.h5"
    assert _run("theory", "--d", "60", "-o", wrong).exit_code == 0
    out = tmp_path / "c.h5"
    codes = [_run("compare", sim_file, wrong, "--strict", "-o", out).exit_code for _ in range(2)]
    assert codes == [1, 1]


def test_identities():
    c = make_config(M=20, N=300, d=6)
    assert comparison_identity(c, None, True) != comparison_identity(c, c, True)
    assert comparison_identity(c, c, True) != comparison_identity(c, c, False)
    assert comparison_identity(c, c, True) == comparison_identity(c.replace(checkpoint_every=4),
                                                                  c, True)
    assert run_hash(c) != run_hash(c.replace(seed=1))


def test_identities_made_before_the_init_field_are_kept():
    """Comparison identities (``inputs_hash`` in compare.h5) computed once by the revision
    before ``init`` existed, pasted as literals (an independent reference): the iid default
    keeps them; a symmetric run is another identity."""
    c = make_config(M=30, N=400, d=8, n_test=200, dt=0.25, t_max=6.0, n_times=12, seed=3)
    assert comparison_identity(c, None, True) == "107aca8a9f17"
    assert comparison_identity(c, make_config(d=8), False) == "e51448d5c943"
    assert comparison_identity(c.replace(init="iid"), None, True) == "107aca8a9f17"
    assert comparison_identity(c.replace(init="symmetric"), None, True) != "107aca8a9f17"


def test_library_refusal_names_the_file(sim_file):
    config = make_config(M=20, N=300, d=6, n_test=100, t_max=8, dt=0.5, n_times=10, seed=2)
    assert existing_result(sim_file, "simulation", run_hash(config), config=config) is True
    with pytest.raises(ConfigError, match="not a complete meanfield theory file"):
        existing_result(sim_file, "theory", run_hash(config))
    assert existing_result(sim_file, "theory", run_hash(config), overwrite=True) is False


def test_derive_files_are_reused_or_refused(tmp_path):
    """A derivation file carries the identity of its request: the same request leaves it
    untouched, another one is refused (exit 2, file unchanged) unless --overwrite."""
    for name in ("d.json", "d.tex", "d.txt", "d.png"):
        path = tmp_path / name
        args = ["derive", "relu", "--section", "moments", "-o", path]
        assert _run(*args).exit_code == 0
        before = _digest(path)
        again = _run(*args)
        assert again.exit_code == 0 and "left untouched" in again.stderr
        other = _run("derive", "erf", "--section", "moments", "-o", path)
        assert other.exit_code == 2 and "holds another result" in other.output
        assert _digest(path) == before
        assert _run("derive", "erf", "--section", "moments", "--overwrite", "-o",
                    path).exit_code == 0
        assert _digest(path) != before
