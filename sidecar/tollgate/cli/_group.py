"""The ``tollgate`` command group and what its verbs share: the sidecar options, the error state."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import click

from .. import __version__

__all__ = ["DEFAULT_TARGET", "STORE_URL_ENV", "Args", "State", "group", "sidecar_options"]

DEFAULT_TARGET = "127.0.0.1:50551"
STORE_URL_ENV = "TOLLGATE_STORE_URL"
"""When set, replaces ``store.url``: the Redis URL (and its password) comes from a secret, not the config file."""

F = TypeVar("F", bound=Callable[..., Any])
Args = SimpleNamespace
"""A verb's options by name, as its click command received them."""


class State:
    """What ``main`` needs to know after click has parsed the line: ``--debug``, and the sidecar named."""

    debug = False
    target = ""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="tollgate", message="%(prog)s %(version)s",
                      help="print the version and exit")
@click.option("--debug", is_flag=True, help="show the traceback of an error, not one line")
def group(debug: bool) -> None:
    """Tollgate: route each LLM call to the cheapest capable model, and hold its cost against budgets first.

    Every error is one line saying what to do (the traceback with --debug). Verbs that talk to a running
    sidecar take --target and --token ($TOLLGATE_TARGET, $TOLLGATE_TOKEN).
    """
    State.debug = debug


def sidecar_options(command: F) -> F:
    """``--target`` and ``--token``, for every verb that talks to a running sidecar."""
    command = click.option(
        "--token", envvar="TOLLGATE_TOKEN", default="", show_default=False,
        help="the caller's bearer token, once callers are configured (default: $TOLLGATE_TOKEN)")(command)
    return click.option(
        "--target", envvar="TOLLGATE_TARGET", default=DEFAULT_TARGET, show_default=False,
        help=f"the sidecar: host:port or unix:///path.sock (default: $TOLLGATE_TARGET, else {DEFAULT_TARGET})",
    )(command)
