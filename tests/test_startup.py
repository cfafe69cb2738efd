"""Start-up: ``import neupims`` loads nothing else; the CLI imports only the subcommand named
on the command line (each subcommand module imports what it needs at module level), all of
them for the top-level help or an unknown name, and none for ``--version``; a sweep worker
imports only the experiment kind its task names."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from neupims.cli import build_parser, command_modules

#: Runs in a fresh interpreter; prints which neupims modules and heavy libraries each step
#: had loaded.
PROBE = """
import json, sys
def loaded():
    return sorted(m for m in sys.modules if m.startswith("neupims") or m in HEAVY)
HEAVY = {"pandas", "matplotlib", "simpy", "numba", "distributed"}
out = {}
import neupims
out["import"] = loaded()
from neupims.cli import main
for argv in (["--version"], ["trace", "--list"]):
    try:
        main(argv)
    except SystemExit:
        pass
    out[argv[0]] = loaded()
print(json.dumps(out))
"""


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_import_neupims_and_the_cli_load_only_what_the_command_needs():
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    steps = json.loads(res.stdout.splitlines()[-1])
    assert steps["import"] == ["neupims"]
    # --version: the CLI package and the error types, no subcommand module
    assert not [m for m in steps["--version"] if m.startswith("neupims.cli.")]
    cli_modules = [m for m in steps["trace"] if m.startswith("neupims.cli.")]
    assert cli_modules == ["neupims.cli.trace"]
    assert not {"pandas", "matplotlib", "simpy", "numba", "distributed"} & set(steps["trace"])


def test_the_parser_has_the_named_subcommand_or_else_all_of_them():
    every = _subcommands(build_parser())
    assert {"trace", "replay", "run", "iteration", "memsim", "plot", "calibrate"} <= every
    assert set(command_modules()) >= every  # each subcommand is the module of its name
    assert _subcommands(build_parser(["trace", "--model", "x"])) == {"trace"}
    assert _subcommands(build_parser(["--version"])) == set()
    for argv in ([], ["--help"], ["-h", "trace"], ["no-such-command"], ["calibrate_cpu"]):
        assert _subcommands(build_parser(argv)) == every, argv


WORKER_PROBE = """
import json, sys
from neupims.experiments.worker import run_task
task = {"key": "k", "kind": "synthetic", "index": 0, "swept": {}, "config": {"x": 2.0},
        "kind_module": sys.argv[1]}
rec = run_task(task)
kinds = sorted(m for m in sys.modules if m.startswith("neupims.experiments.kinds."))
print(json.dumps({"status": rec["status"], "value": rec["result"]["value"], "kinds": kinds,
                  "pandas": "pandas" in sys.modules}))
"""


def _worker_probe(kind_module: str) -> dict:
    cmd = [sys.executable, "-c", WORKER_PROBE, kind_module]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.splitlines()[-1])


def test_a_worker_imports_only_the_kind_its_task_names():
    assert _worker_probe("neupims.experiments.kinds.synthetic") == {
        "status": "ok",
        "value": 2.0,
        "kinds": ["neupims.experiments.kinds.synthetic"],
        "pandas": False,
    }


def test_a_task_naming_a_wrong_kind_module_still_finds_its_kind_among_all():
    out = _worker_probe("neupims.no_such_module")
    assert (out["status"], out["value"]) == ("ok", 2.0)
    assert "neupims.experiments.kinds.replay" in out["kinds"]
