"""Entry point of the ``meanfield`` command.

Commands are imported lazily, when invoked, so that ``meanfield derive`` does not pay for
importing numba or h5py and ``meanfield --help`` is instant.
"""

from __future__ import annotations

import importlib
import signal
from typing import Any

import click

# name -> "module:attribute" of the click command
COMMANDS = {
    "derive": "cli.derive:derive",
    "compare": "cli.compare:compare",
    "crossover": "cli.crossover:crossover",
    "linear": "cli.linear:linear",
    "reproduce": "cli.reproduce:reproduce",
    "simulate": "cli.simulate:simulate",
    "sweep": "cli.sweep:sweep",
    "theory": "cli.theory:theory",
}


class LazyGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Set the thread policy of the numerical libraries before any of them loads, let a
        write past a file-size limit fail as an error instead of killing the process, and end
        on SIGTERM as on Ctrl-C."""
        from meanfield.runtime import (
            ignore_file_size_signal,
            set_thread_policy,
            terminate_as_interrupt,
        )

        handled = [s for s in (signal.SIGTERM, getattr(signal, "SIGXFSZ", None)) if s]
        previous = {s: signal.getsignal(s) for s in handled}
        set_thread_policy()
        ignore_file_size_signal()
        terminate_as_interrupt()
        try:
            return super().main(*args, **kwargs)
        finally:  # a caller that runs the command in-process keeps its own handlers
            for s, handler in previous.items():
                if handler is not None:  # None: set outside Python, left as it is
                    signal.signal(s, handler)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meanfield", prog_name="meanfield")
def main() -> None:
    """Mean-field theory and finite-width simulation of two-layer networks.

    Derive closed forms, integrate the mean-field theory of hinge-loss training,
    simulate finite networks, and compare theory with simulation.
    """
