"""Command-line entry point ``neupims``.

Every module in this package that defines ``register(subparsers)`` adds the subcommand of
its own name; ``register`` sets ``func`` on its parser. Each subcommand module imports what
it needs at module level, so :func:`main` imports only the one named on the command line
(found by name in this package's module list); with no subcommand, ``--help`` or an unknown
name it imports them all, because the help and the error list every subcommand. A leading
``--version`` imports none. Errors from bad user input (NeupimsError) are printed as one
clear message with exit status 2, never as a traceback; so are OS errors of path arguments
(a folder that cannot be created, a file that cannot be written).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from neupims import __version__
from neupims.errors import NeupimsError


def command_modules() -> list[str]:
    """Names of this package's modules, each a subcommand of that name if it has ``register``."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__))


def _named_command(argv: Sequence[str]) -> str | None:
    """The subcommand on the command line: its first argument not starting with '-' (the
    top-level parser has no option that takes a value); None when a top-level ``-h`` or
    ``--help`` comes first (that help lists every subcommand)."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with every subcommand (``argv`` None) or with what parsing ``argv``
    needs: the subcommand it names when that is one, none for a leading ``--version``,
    else all of them."""
    parser = argparse.ArgumentParser(
        prog="neupims",
        description="Simulate DNN/LLM inference on NPUs, PIM-enabled HBM, GPUs and CPUs.",
    )
    parser.add_argument("--version", action="version", version=f"neupims {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = command_modules()
    cmd = None if argv is None else _named_command(argv)
    if argv is not None and cmd is None and argv[:1] == ["--version"]:
        return parser
    if cmd in names:
        _register(sub, [cmd])
    if cmd not in sub.choices:  # no subcommand, or not one of ours: list them all
        _register(sub, names)
    return parser


def _register(sub: argparse._SubParsersAction, names: Sequence[str]) -> None:
    for name in names:
        mod = importlib.import_module(f"{__name__}.{name}")
        if hasattr(mod, "register") and name not in sub.choices:
            mod.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except NeupimsError as exc:
        print(f"neupims {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path argument the loaders do not read themselves
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"neupims {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neupims {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
