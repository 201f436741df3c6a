"""Starting a command line: a bad --config path, config argument or override is one line on stderr and
exit status 2, not a traceback."""

import sys
from collections.abc import Callable

from absl import app, flags

from alignment_jax.errors import InputError

_CONFIG_ERRORS = (InputError, OSError, TypeError, ValueError)


def run_app(main: Callable[[list[str]], None]) -> None:
    """absl's app.run(main) with a flags parser that reports config errors in one line."""
    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=_parse)


def _parse(argv: list[str]) -> list[str]:
    try:
        remaining = flags.FLAGS(argv)
        flags.FLAGS.config.keys()  # config_flags defers a file that failed to load until first use
    except (AttributeError, KeyError) as e:
        _fail(f"--config: unknown config field {str(e).strip(chr(34))} (see alignment_jax/config_base.py)")
    except (flags.Error, *_CONFIG_ERRORS) as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]  # the cause comes last
        _fail(lines[-1] if lines else type(e).__name__)
    return remaining


def _fail(message: str) -> None:
    print(f"error: {message} (--helpfull lists the flags)", file=sys.stderr)
    sys.exit(2)
