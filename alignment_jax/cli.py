"""What the command lines (`alignment_jax.probe`, `alignment_jax.sweep`) share: the flags --config,
--workdir and --distributed, and every failure as one line on stderr with an exit status, never a traceback:

    2    bad input: a bad --config (file, argument, override), a setting, an input file, the workdir, a run
         already writing in it, running out of memory (the line names the setting to lower)
    130  interrupted (SIGINT, Ctrl-C): "interrupted; rerun to resume"; 143 for SIGTERM
    1    an unexpected internal error: a line asking to report it, the traceback in DIR/error.log

`main(command, argv)` is the whole command line as a function; `python -m` calls it with sys.argv.
"""

import gc
import os
import sys
import traceback
from collections.abc import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from alignment_jax import host_memory, stopping, workdir
from alignment_jax.config import files as config_files
from alignment_jax.errors import InputError, first_line, out_of_memory

CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (big_vision style get_config(arg)).")
WORKDIR = flags.DEFINE_string("workdir", None, "Folder for everything the run writes.")
DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host: TPU slices, SLURM, or the "
    "JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables; docs/distributed.md)."
)  # fmt: skip
INPUT, INTERNAL, INTERRUPTED, TERMINATED = 2, 1, 130, 143

Command = Callable[[ml_collections.ConfigDict, str], int]


class _Exit(Exception):
    def __init__(self, status: int):
        self.status = status


def run_app(command: Command) -> None:
    """The `python -m` entry: exits with `main(command, sys.argv)`'s status.

    An interrupted run leaves at once (os._exit, after flushing): its outputs are already whole on disk,
    and tearing down the interpreter while XLA still runs the interrupted computation can crash it.
    Before anything runs, malloc is told to keep the memory XLA frees (host_memory.py).
    """
    host_memory.keep_freed_memory()
    status = main(command, sys.argv)
    if status in (INTERRUPTED, TERMINATED):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def main(command: Command, argv: list[str]) -> int:
    """Parses the flags in `argv`, runs `command(config, workdir)`, and returns the exit status; every
    failure is one line on stderr (module docstring)."""
    try:
        config, workdir_path = _parse(argv)
    except _Exit as e:
        return e.status
    except Exception as e:  # a bug in parsing: reported like any other
        return _unexpected(e, "")
    logging.set_verbosity(logging.WARNING)  # orbax and friends log every file at INFO
    stopped = ""
    try:
        with stopping.raising_on_signals():
            if DISTRIBUTED.value:
                _initialize_distributed()
            return command(config, workdir_path)
    except InputError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        stopped = "interrupted"
    except stopping.Terminated:
        stopped = "terminated"
    except Exception as e:
        return _unexpected(e, workdir_path)
    # Outside the handler: the interrupted frames are gone, and with them their progress bars, which print
    # a last time when they go; this line comes after them.
    gc.collect()
    print(f"{stopped}; rerun to resume", file=sys.stderr, flush=True)
    return INTERRUPTED if stopped == "interrupted" else TERMINATED


def _initialize_distributed() -> None:
    """jax.distributed.initialize(): a TPU slice or a SLURM / Open MPI job is found by JAX itself, which also
    reads JAX_COORDINATOR_ADDRESS (host:port of process 0); JAX_NUM_PROCESSES and JAX_PROCESS_ID, which JAX
    does not read, give the rest elsewhere (several processes on one machine). Raises InputError when it fails."""
    import jax

    counts = {}
    for name, variable in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        text = os.environ.get(variable)
        if text is not None:
            if not text.strip().isdigit():
                raise InputError(f"{variable}={text}: not a whole number; --distributed reads it ({name})")
            counts[name] = int(text)
    try:
        jax.distributed.initialize(**counts)
    except (ValueError, TypeError, RuntimeError) as e:
        raise InputError(
            f"--distributed: jax.distributed.initialize() failed ({first_line(e)}); outside a TPU slice or a SLURM "
            "job set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID (docs/distributed.md)"
        ) from e


def _unexpected(error: Exception, workdir_path: str) -> int:
    """Out of memory and OS errors on a named file are the user's to fix (exit 2); anything else is a bug:
    one line asking to report it, the traceback in DIR/error.log (exit 1)."""
    first = first_line(error)
    if out_of_memory(error):
        return _fail(
            f"out of memory ({first}); lower images.batch_size (extraction), or probe.lambdas / probe.lrs "
            "(fewer probe configurations at once)"
        )
    if isinstance(error, OSError) and error.filename:
        return _fail(f"{error.filename}: {error.strerror or first}")
    log = workdir.write_error_log(workdir_path, traceback.format_exc())
    where = f"with the traceback in {log}" if log else "(no traceback could be saved)"
    print(
        f"error: internal error ({type(error).__name__}: {first}); this is a bug in alignment_jax: please report "
        f"it {where}",
        file=sys.stderr,
        flush=True,
    )
    return INTERNAL


def _unknown_override(argv: list[str], spec: str, error: Exception) -> str:
    """The --config.a.b flag whose field the config file's config lacks (named whole:
    `--config.images.progress`, not just `progress`), or the field named by the error."""
    from alignment_jax.config.files import load_config

    path, _, arg = spec.partition(":") if not os.path.isfile(spec) else (spec, "", "")
    try:
        fields = load_config(path, arg)
    except Exception:  # the file loads badly: name what the error names
        return f"--config: {str(error).strip(chr(34))}"
    for arg in argv:
        if arg.startswith("--config."):
            key = arg[len("--config.") :].split("=", 1)[0]
            node = fields
            for part in key.split("."):
                if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                    return f"--config.{key}"
                node = node[part]
    return f"--config: {str(error).strip(chr(34))}"


def _parse(argv: list[str]) -> tuple[ml_collections.ConfigDict, str]:
    """(config, workdir) from the command line; raises _Exit after one line on stderr."""
    app.define_help_flags()
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # overrides of an earlier parse
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    spec = _config_spec(argv)
    path = spec.partition(":")[0] if spec and not os.path.isfile(spec) else spec
    if path and not os.path.isfile(path):
        _fail(f"--config={spec}: config file not found (paths are relative to {os.getcwd()})", exit=True)
    if path:
        _check_config(spec, argv)
    sys.modules.pop("config_config", None)  # config_flags keeps the module it loaded under this name
    saved = sys.argv
    sys.argv = list(argv)  # config_flags defines the --config.a.b override flags from sys.argv
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # config_flags warns through logging: the line below says it
    try:
        remaining = flags.FLAGS(argv)
        config = flags.FLAGS.config
        if not spec:
            _fail("--config=FILE is required (e.g. --config=configs/demo.py)", exit=True)
        if not isinstance(config, ml_collections.ConfigDict):
            _fail(
                f"--config={spec}: get_config returned {type(config).__name__}, not an ml_collections.ConfigDict "
                "(start from alignment_jax.config.base.base_config())",
                exit=True,
            )
        config.keys()  # config_flags defers a file that failed to load until first use
    except _Exit:
        raise
    except (AttributeError, KeyError) as e:
        if "get_config" in str(e):
            _fail(f"--config={spec}: no get_config function; a config file defines get_config(arg='')", exit=True)
        _fail(f"{_unknown_override(argv, spec, e)}: unknown config field (see alignment_jax/config/base.py)", exit=True)
    except SystemExit:  # --help, --helpfull printed the flags
        raise _Exit(0) from None
    except Exception as e:
        _fail(_config_problem(e, spec, path), exit=True)
    finally:
        sys.argv = saved
        logging.set_verbosity(verbosity)
    if len(remaining) > 1:
        _fail(
            f"unexpected argument(s) {remaining[1:]}: settings are flags, e.g. --config.seed=1 "
            "(--helpfull lists the flags)",
            exit=True,
        )
    if not WORKDIR.value:
        _fail("--workdir=DIR is required (the folder the run writes to)", exit=True)
    return config, WORKDIR.value


def _check_config(spec: str, argv: list[str]) -> None:
    """Loads the config file and applies the --config.a.b overrides to it, as config_flags will, so that a bad
    config argument, an unknown field (with the closest known one) or a value of the wrong type gets one plain
    line naming it (raises _Exit after printing it)."""
    path, _, arg = spec.partition(":") if not os.path.isfile(spec) else (spec, "", "")
    try:
        config = config_files.load_config(path, arg)
    except InputError as e:
        message = str(e)
        if message.startswith(f"{path}: "):  # load_config names the file: name the whole --config
            message = message[len(path) + 2 :]
        _fail(f"--config={spec}: {message}", exit=True)
    for item in argv[1:]:
        if item.startswith("--config."):
            key, sep, text = item[len("--config.") :].partition("=")
            try:
                parent, field = config_files.parent_of(config, key)
            except InputError:
                _fail(f"--config.{key}: unknown config field{config_files.did_you_mean(config, key)}", exit=True)
            try:
                if sep:
                    parent[field] = config_files.typed_value(parent, field, text)
            except (ValueError, TypeError) as e:
                reason = str(e) if isinstance(e, ValueError) else config_files.type_problem(parent, field)
                _fail(f"--config.{key}={text}: {reason}", exit=True)


def _config_spec(argv: list[str]) -> str:
    """The value of --config in argv ("" when not given)."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith(("--config=", "-config=")):
            return arg.split("=", 1)[1]
        if arg in ("--config", "-config") and i + 1 < len(argv):
            return argv[i + 1]
    return ""


def _config_problem(error: Exception, spec: str, path: str) -> str:
    """One line for a config that failed to load or an override that does not fit."""
    cause = error
    while isinstance(cause, flags.Error) and (cause.__cause__ or cause.__context__):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, InputError):
        return str(cause)
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if path and config_files.same_file(f.filename, path)]
    in_file = frames or isinstance(cause, SyntaxError | ImportError) or not isinstance(error, flags.Error)
    if not in_file:  # an override or flag that does not fit: absl's message ends with the cause
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        return f"{lines[-1] if lines else type(error).__name__} (--helpfull lists the flags)"
    return f"--config={spec}: the config file failed to load ({config_files.load_error(cause, path)}); fix the file"


def _fail(message: str, exit: bool = False) -> int:
    """Prints `message` as one line on stderr; returns status 2 (raises _Exit(2) with `exit`)."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    if exit:
        raise _Exit(INPUT)
    return INPUT
