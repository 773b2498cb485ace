"""What every entry point shares: config names, quiet logs, and one-line errors."""

import logging
import os
import sys
from typing import Callable

from absl import app, flags
from absl import logging as absl_logging

from experiments import configs

# Multi-process runs on launchers that JAX does not detect (TPU pods, SLURM and Open MPI are).
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1.")
_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/cnn_jax/jax"),
    "JAX's persistent compilation cache: a resumed run or the next seed of a sweep reuses the "
    "compiled steps instead of compiling them again. Empty: no cache.",
)


def run(main: Callable[[list[str]], None]) -> None:
    """absl's app.run with `--config=NAME` resolved, library chatter muted, and user errors
    (bad flag or config, missing data, broken checkpoint, ...) printed as one line, exit code
    1; Ctrl-C before training has started (afterwards it saves and stops) exits with 130."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF only decodes images here
    from cnn_jax.cpu import xla_flags

    xla_flags.use_eigen_convolutions_on_cpu()
    from cnn_jax.errors import Interrupted, UserError

    try:
        app.run(lambda argv: _with_logging(main, argv), argv=configs.resolve_argv(sys.argv),
                flags_parser=_parse_flags)
    except Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)  # The shell's code for a run ended by Ctrl-C.
    except KeyboardInterrupt:
        print("error: Interrupted before a checkpoint could be saved; the same command starts "
              "again from the latest checkpoint, if any.", file=sys.stderr)
        sys.exit(130)
    except UserError as e:
        sys.exit(f"error: {e}")


def _parse_flags(argv: list[str]) -> list[str]:
    from cnn_jax.errors import ConfigError

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e).strip().splitlines()[0]
        raise ConfigError(message if message.endswith((".", "?")) else message + ".") from None
    except (AttributeError, KeyError) as e:  # an override of a field the config does not have
        raise ConfigError(configs.unknown_field_message(e)) from None


def _with_logging(main: Callable[[list[str]], None], argv: list[str]) -> None:
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax, tfds and jax log a lot at INFO.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    loggers = [logging.getLogger(name) for name in ("cnn_jax", "experiments")]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False

    from cnn_jax.training import distributed

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    import jax

    if _CACHE_DIR.value:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE_DIR.value))

    if jax.process_index() != 0:  # Process 0 speaks for the run; the others report problems.
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    main(argv)
