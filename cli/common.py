"""Shared pieces of the commands: config options, error reporting, the progress bar."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import click

from meanfield.config import Config, ConfigError, field_help, from_sources, range_text

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class BadInput(click.ClickException):
    """Invalid user input: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def reports_bad_input(func: Callable) -> Callable:
    """Turn the library's input errors (``ValueError`` subclasses it raises for bad
    configs, activations, files) into :class:`BadInput`; Ctrl-C or SIGTERM into one line and
    exit status 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from analytic.activations import ActivationError
        from meanfield.io import NotMeanfieldFile

        try:
            return func(*args, **kwargs)
        except (ConfigError, ActivationError, NotMeanfieldFile) as err:
            raise BadInput(str(err)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; no file is left half-written: run the same command again "
                       "(finished results are reused)", err=True)
            raise SystemExit(130) from None

    return wrapper


def option_help(name: str) -> str:
    """The ``--help`` text of the option for Config field ``name``, from the field's metadata:
    meaning and unit; allowed range or choices; default."""
    spec = {f.name: f for f in fields(Config)}[name]
    default = getattr(Config(), name)
    rng = range_text(name)
    if spec.type.startswith("tuple"):
        rng = f"comma-separated numbers, {rng}" if rng else "comma-separated numbers"
        shown = ",".join(f"{v:g}" for v in default) or "none"
    else:
        shown = default
    parts = [field_help(name), rng] if rng else [field_help(name)]
    return f"{'; '.join(parts)} [default: {shown}]"


def config_options(*names: str) -> Callable:
    """Click options ``--NAME`` for the given Config fields (``_`` spelled ``-``), plus
    ``--config FILE.toml``; each help line comes from the field's metadata
    (:func:`option_help`). Values left out are ``None`` and fall back to the file, then to
    the defaults; validation happens in :func:`meanfield.config.make_config` (choices stay
    plain strings so that a bad value gives its one-line message and exit status 2)."""
    by_name = {f.name: f for f in fields(Config)}

    def decorate(func: Callable) -> Callable:
        for name in reversed(names):
            spec = by_name[name]
            flag = "--" + name.replace("_", "-")
            text = option_help(name)
            if spec.type == "bool":
                opt = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=text)
            elif spec.type.startswith("tuple"):
                opt = click.option(flag, name, type=str, default=None, help=text)
            else:
                opt = click.option(flag, name, type=_TYPES[spec.type], default=None, help=text)
            func = opt(func)
        return click.option(
            "--config", "config_path", type=click.Path(dir_okay=False), default=None,
            help="TOML file of config fields; options given here override it.",
        )(func)

    return decorate


overwrite_option = click.option(
    "--overwrite", is_flag=True,
    help="replace an existing output that holds another result (by default a file of another "
         "configuration is refused, and one of the same configuration is left untouched).")


memory_option = click.option(
    "--max-memory", "max_memory", default=None, metavar="SIZE",
    help="the most memory the command may use, e.g. 16GiB, 500M, 2e9 (bytes) [default: the "
         "memory available now]; a run estimated to need more is refused before it starts.")


def check_memory(config: Config, command: str, max_memory: str | None) -> None:
    """Refuse (exit 2, one line with the estimate and the limit) a run whose estimated peak
    memory does not fit ``--max-memory`` or, without it, the available memory."""
    from meanfield import memory

    memory.check_memory(config, command,
                        None if max_memory is None else memory.parse_size(max_memory))


def check_device(config: Config) -> None:
    """Refuse (exit 2, one line saying whether CuPy or the GPU is missing) ``device = cuda``
    where it cannot run, before anything is written."""
    if config.device == "cuda":
        from meanfield.step.array_api import cuda_namespace

        cuda_namespace()


def resolve_config(config_path: str | None, **options: Any) -> Config:
    """Defaults <- TOML file <- command-line options, validated."""
    return from_sources(config_path, **options)


@contextlib.contextmanager
def progress_bar(config: Config, show: bool | None) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr over the run's steps (``None``: only on a terminal); yields the
    ``on_step(n)`` callback of :func:`meanfield.simulate.simulate`."""
    from tqdm import tqdm

    from meanfield.simulate import check_steps

    show = sys.stderr.isatty() if show is None else show
    bar = tqdm(total=check_steps(config), disable=not show, unit="step", leave=False,
               dynamic_ncols=True)

    def on_step(n: int) -> None:
        bar.update(n - bar.n)

    try:
        yield on_step
    finally:
        bar.close()


@contextlib.contextmanager
def graceful_stop() -> Iterator[list[bool]]:
    """The first SIGINT / SIGTERM sets a flag the work polls (a simulation at every step, a
    sweep while its points run: they checkpoint and stop); a second one interrupts at once
    (the last checkpoints stay valid)."""
    flag = [False]

    def handler(signum: int, frame: object) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
