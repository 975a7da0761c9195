"""The ``tollgate`` command: run the sidecar, check and import config, read and act on budgets, route offline.

One click group (``_group``); the verbs that work on files and this machine (``_local``) and those that
talk to a running sidecar (``_remote``) register on it. ``main`` turns what a verb raises into one line
on stderr and an exit status (the traceback with ``--debug``): 2 for a usage or config error, 1 for a
failure, 130 for Ctrl-C.
"""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError
from . import _local, _remote
from ._group import DEFAULT_TARGET, STORE_URL_ENV, State, group

__all__ = ["DEFAULT_TARGET", "STORE_URL_ENV", "group", "main"]

_VERBS = (_local, _remote)  # imported for the verbs they register on the group


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tollgate`` command: one line per error, the traceback only with ``--debug``."""
    from tollgate_client import TollgateClientError

    State.debug = False
    try:
        result = group.main(args=argv, prog_name="tollgate", standalone_mode=False)
    except click.ClickException as exc:  # a usage error: click says what to fix
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except (ConfigError, TollgateClientError) as exc:
        if State.debug:
            raise
        line, code = _one_line(exc)
        print(line, file=sys.stderr)
        return code
    except BrokenPipeError:
        # The reader went away (``tollgate eval --json | head``): nothing left to say to it.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def _one_line(exc: Exception) -> tuple[str, int]:
    """What an error says on stderr, and the exit status: 2 for a config to fix, 1 for a failure."""
    from tollgate_client import UnavailableError

    if isinstance(exc, ConfigError):
        return f"config error: {exc}", 2
    if isinstance(exc, UnavailableError):
        return (f"error: cannot reach the sidecar at {State.target or DEFAULT_TARGET}: is it running (tollgate serve), "
                f"and is --target right? ({exc.code.name if exc.code else 'UNAVAILABLE'})", 1)
    return f"error: {exc}", 1
