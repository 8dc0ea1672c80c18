"""The ``nftkit`` command: a thin Typer layer over the library.

Usage errors exit 2 with one line, runtime failures exit 1 with one line; ``--debug`` prints the
traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType

import typer

from nftkit import __version__
from nftkit.cli import compare as compare_cmd
from nftkit.cli import debug, demo, evaluate, leaderboard, plugins, score, serve, train
from nftkit.cli import export as export_cmd
from nftkit.cli import policies as policies_cmd
from nftkit.cli import prompts as prompts_cmd
from nftkit.cli import report as report_cmd
from nftkit.cli.state import STATE
from nftkit.errors import NftkitError, UsageError

app = typer.Typer(
    name="nftkit",
    help="Reward evaluation and DiffusionNFT training for text-to-image models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nftkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    db: str = typer.Option(None, "--db", help="Results database URL (env NFTKIT_DB)."),
    weights_dir: str = typer.Option(
        None,
        "--weights-dir",
        help="Read each reward's weights from DIR/<reward>/ (env NFTKIT_WEIGHTS_DIR).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Reward evaluation and DiffusionNFT training for text-to-image models."""
    STATE.db = db
    STATE.weights_dir = weights_dir
    STATE.debug = debug
    if weights_dir:
        os.environ["NFTKIT_WEIGHTS_DIR"] = weights_dir


app.add_typer(plugins.rewards_app, name="rewards")
app.add_typer(plugins.evaluators_app, name="evaluators")
app.add_typer(policies_cmd.policies_app, name="policies")
app.command("score")(score.score)
app.command("leaderboard")(leaderboard.leaderboard)
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("report")(report_cmd.report)
app.command("compare")(compare_cmd.compare)
app.add_typer(prompts_cmd.prompts_app, name="prompts")
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("export")(export_cmd.export)
app.add_typer(debug.debug_app, name="debug")


def _fail(message: str, code: int) -> None:
    if STATE.debug:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _click_exception_modules() -> list[ModuleType]:
    """Click's exception modules: typer may vendor its own copy of click."""
    modules = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return modules


_CLICK = _click_exception_modules()
_CLICK_EXIT = (typer.Exit, *(m.Exit for m in _CLICK if hasattr(m, "Exit")))
_CLICK_ABORT = (typer.Abort, *(m.Abort for m in _CLICK if hasattr(m, "Abort")))
_CLICK_ERROR = tuple(m.ClickException for m in _CLICK)


def run() -> None:
    """Console-script entry point with nftkit's error policy."""
    try:
        app(standalone_mode=False)
    except _CLICK_EXIT as exc:
        sys.exit(exc.exit_code)
    except _CLICK_ABORT:
        _fail("aborted", 1)
    except _CLICK_ERROR as exc:
        message = exc.format_message().strip().replace("\n", " ")
        if not message:  # e.g. no arguments: the help was already printed
            sys.exit(exc.exit_code)
        _fail(message, exc.exit_code)
    except UsageError as exc:
        _fail(str(exc), 2)
    except NftkitError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        hint = "" if STATE.debug else " (run with --debug for the traceback)"
        _fail(f"{type(exc).__name__}: {exc}{hint}", 1)


if __name__ == "__main__":
    run()
