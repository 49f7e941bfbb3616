"""Config options of the commands: help generated from the field metadata, plain-string
choices validated by make_config (one-line message, exit status 2)."""

import click
import pytest
from click.testing import CliRunner

from cli.common import config_options, option_help, reports_bad_input, resolve_config
from cli.main import main
from meanfield.config import FIELD_NAMES, Config, options_for, range_text


def _command(name: str) -> click.Command:
    with click.Context(main) as ctx:
        return main.get_command(ctx, name)


@pytest.mark.parametrize("name", ["simulate", "theory"])
def test_every_config_option_says_what_it_means(name):
    cmd = _command(name)
    options = [p for p in cmd.params if isinstance(p, click.Option) and p.name in FIELD_NAMES]
    assert tuple(p.name for p in options) == options_for(name)
    for p in options:
        assert p.help, p.name
        marker = p.help.rfind(" [default: ")
        assert marker > 0 and p.help.endswith("]"), p.help
        description = p.help[:marker]
        assert len(description) > 10, p.name
        assert range_text(p.name) in description, p.name
    res = CliRunner().invoke(main, [name, "--help"])
    assert res.exit_code == 0, res.output
    for p in options:
        assert p.opts[0] in res.output
    assert "second-layer" in res.output and "mean-field time units of 1/beta" in res.output


def test_option_help_text():
    assert option_help("sa") == (
        "initial standard deviation of the second-layer weights a_i; >= 0 (at least 1e-09, at "
        "most 1e+06) "
        "[default: 1.0]"
    )
    assert option_help("loss").endswith("; one of hinge, squared, logistic [default: hinge]")
    assert option_help("times").endswith(
        "; comma-separated numbers, non-negative and strictly increasing [default: none]"
    )
    assert option_help("online").endswith(" [default: False]")


@click.command()
@config_options(*options_for("simulate"))
@reports_bad_input
def _probe(config_path, **options):
    click.echo(resolve_config(config_path, **options).to_json())


def test_options_parse_into_a_config():
    res = CliRunner().invoke(_probe, ["--M", "5", "--online", "--times", "1,2.5",
                                      "--label-noise", "0.1", "--dtype", "float32"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == Config(M=5, online=True, times=(1.0, 2.5), label_noise=0.1,
                                        dtype="float32").to_json()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "float16"], "dtype must be one of float32, float64; got 'float16'"),
        (["--loss", "hingey"], "loss must be one of hinge, squared, logistic; got 'hingey'"),
        (["--N", "300", "--batch", "301"], "batch must be in [0, N=300] (0 = full batch), got 301"),
        (["--sa", "-1"], "sa must be >= 0, got -1.0"),
    ],
)
def test_bad_values_give_one_line_and_status_2(args, message):
    res = CliRunner().invoke(_probe, args)
    assert res.exit_code == 2
    assert res.output == f"Error: {message}\n"
