"""Command-line entry point ``neupims``.

Every module in this package that defines ``register(subparsers)`` adds one subcommand;
``register`` sets ``func`` on its parser. Errors from bad user input (NeupimsError) are
printed as one clear message with exit status 2, never as a traceback; so are OS errors
of path arguments (a folder that cannot be created, a file that cannot be written).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from neupims import __version__
from neupims.errors import NeupimsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neupims",
        description="Simulate DNN/LLM inference on NPUs, PIM-enabled HBM, GPUs and CPUs.",
    )
    parser.add_argument("--version", action="version", version=f"neupims {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
