"""`trust demo`: the whole client path against a throwaway repository on 127.0.0.1."""

from __future__ import annotations

from typing import Annotated

import typer

from stella_trust._cli.options import reported


def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary directory for inspection.")
    ] = False,
) -> None:
    """Build a demo repository, serve it on 127.0.0.1, then init -> sync -> status.

    Everything happens in a temporary directory with a throwaway config and cache;
    nothing on this host is touched and no network beyond loopback is used.

    Examples:

      trust demo

      trust demo --keep     # then look around in the printed directory
    """
    from stella_trust.demo.run import run_demo

    with reported():
        raise typer.Exit(run_demo(keep=keep))
