"""Shared pieces of the commands: config options, error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from meanfield.config import Config, ConfigError, from_sources

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class BadInput(click.ClickException):
    """Invalid user input: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def reports_bad_input(func: Callable) -> Callable:
    """Turn the library's input errors (``ValueError`` subclasses it raises for bad
    configs, activations, files) into :class:`BadInput`; Ctrl-C into exit status 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from analytic.activations import ActivationError
        from meanfield.io import NotMeanfieldFile

        try:
            return func(*args, **kwargs)
        except (ConfigError, ActivationError, NotMeanfieldFile) as err:
            raise BadInput(str(err)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise SystemExit(130) from None

    return wrapper


def config_options(*names: str) -> Callable:
    """Click options ``--NAME`` for the given Config fields (``_`` spelled ``-``), plus
    ``--config FILE.toml``. Values left out are ``None`` and fall back to the file, then to
    the defaults; validation happens in :func:`meanfield.config.make_config`."""
    by_name = {f.name: f for f in fields(Config)}
    defaults = Config()

    def decorate(func: Callable) -> Callable:
        for name in reversed(names):
            spec = by_name[name]
            flag = "--" + name.replace("_", "-")
            if spec.type == "bool":
                opt = click.option(f"{flag}/--no-{flag[2:]}", name, default=None,
                                   help=f"[default: {getattr(defaults, name)}]")
            elif spec.type.startswith("tuple"):
                opt = click.option(flag, name, type=str, default=None,
                                   help="comma-separated numbers")
            else:
                opt = click.option(flag, name, type=_TYPES[spec.type], default=None,
                                   help=f"[default: {getattr(defaults, name)}]")
            func = opt(func)
        return click.option(
            "--config", "config_path", type=click.Path(dir_okay=False), default=None,
            help="TOML file of config fields; options given here override it.",
        )(func)

    return decorate


def resolve_config(config_path: str | None, **options: Any) -> Config:
    """Defaults <- TOML file <- command-line options, validated."""
    return from_sources(config_path, **options)
