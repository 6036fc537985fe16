"""The ``sarcoscreen`` commands: one module per command, named after it (`command` says what each provides).

`COMMANDS` is the order in which ``sarcoscreen --help`` lists them.
"""

from __future__ import annotations

from types import ModuleType

from sarcoscreen.node.commands import (
    analyze,
    bundle,
    calibrate,
    config,
    db,
    demo,
    evaluate,
    heights,
    inspect,
    jobs,
    phantom,
    purge,
    results,
    run,
    send,
    serve,
    study,
    train,
    web,
    worker,
)
from sarcoscreen.node.commands.errors import ExitCode, UserError

__all__ = ["COMMANDS", "ExitCode", "UserError"]

COMMANDS: tuple[ModuleType, ...] = (
    config, db, heights, phantom, inspect, analyze, send, serve, worker, run, results, jobs, web, purge, demo,
    bundle, train, evaluate, study, calibrate,
)
"""Every command module, in the order of the command line's help."""
