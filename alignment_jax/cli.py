"""What the command lines (`alignment_jax.probe`, `alignment_jax.sweep`) share: the flags --config,
--workdir and --distributed, and errors as one line on stderr with exit status 2 instead of a traceback
(a bad --config path, config argument or override, or bad input found while running)."""

import sys
from collections.abc import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from alignment_jax.errors import InputError

CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (big_vision style get_config(arg)).")
WORKDIR = flags.DEFINE_string("workdir", None, "Folder for everything the run writes.")
DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host: TPU pods, SLURM, or the "
    "JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables)."
)  # fmt: skip
_CONFIG_ERRORS = (InputError, OSError, TypeError, ValueError)


def run_app(command: Callable[[ml_collections.ConfigDict, str], int]) -> None:
    """Parses the flags, then exits with `command(config, workdir)`'s status."""

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if not WORKDIR.value:
            _fail("--workdir=DIR is required (the folder the run writes to)")
        logging.set_verbosity(logging.WARNING)  # orbax and friends log every file at INFO
        if DISTRIBUTED.value:
            import jax

            jax.distributed.initialize()
        try:
            status = command(CONFIG.value, WORKDIR.value)
        except InputError as e:
            _fail(str(e))
        sys.exit(status)

    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=_parse)


def _parse(argv: list[str]) -> list[str]:
    try:
        remaining = flags.FLAGS(argv)
        flags.FLAGS.config.keys()  # config_flags defers a file that failed to load until first use
    except (AttributeError, KeyError) as e:
        _fail(f"--config: unknown config field {str(e).strip(chr(34))} (see alignment_jax/config/base.py)")
    except (flags.Error, *_CONFIG_ERRORS) as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]  # the cause comes last
        _fail(f"{lines[-1] if lines else type(e).__name__} (--helpfull lists the flags)")
    return remaining


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
