"""The ``distillab`` command line: one entry point, one sub-command per stage.

Each stage owns a small ``command`` module with ``register(subparsers)``; those modules import
nothing heavy at the top (torch, transformers) so that ``distillab audit`` starts fast. Errors a
user can fix are :class:`~distillab.errors.DistillabError`: printed on one line, exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from distillab import __version__
from distillab.errors import DistillabError

# Failures of the user's disk or permissions, not of distillab: one line naming the file, exit 2.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

# Data-flow order, which is also the order ``--help`` lists them in.
COMMAND_MODULES = (
    "distillab.pipeline_command",  # run, validate
    "distillab.data.command",  # data list|fetch|inspect
    "distillab.teacher.command",  # teacher, cache inspect|import
    "distillab.train.command",  # train, grid
    "distillab.baselines.command",  # baseline
    "distillab.calibrate.command",  # calibrate
    "distillab.audit.command",  # audit
    "distillab.quantize.command",  # quantize
    "distillab.report.command",  # report
    "distillab.serve_command",  # predict
    "distillab.losses.command",  # check-loss
    "distillab.budget_command",  # budget
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distillab",
        description="Knowledge-distillation lab: cache the teacher, train students, audit what transferred.",
    )
    parser.add_argument("--version", action="version", version=f"distillab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except DistillabError as exc:
        print(f"distillab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = exc.filename or "writing output"
        print(f"distillab {args.command}: error: {where}: {exc.strerror} "
              "(free space, raise the limit or choose another output location)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distillab {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        _release_process_group()


def _release_process_group() -> None:
    """Under torchrun, leave the process group before exiting: gloo threads still alive at exit abort the process."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
