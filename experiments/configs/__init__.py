"""Named experiment configs: `--config=NAME[:ARGS]` means `experiments/configs/NAME.py`.

Each config file defines `get_config(arg=None) -> ml_collections.ConfigDict`; files whose
name starts with `_` hold shared recipes, not experiments.
"""

import pathlib
import sys
from typing import Any

import ml_collections
from ml_collections import config_flags

from cnn_jax.errors import ConfigError

DIRECTORY = pathlib.Path(__file__).parent


def names() -> list[str]:
    """The named configs, sorted."""
    return sorted(p.stem for p in DIRECTORY.glob("*.py") if not p.name.startswith("_"))


def resolve(spec: str) -> str:
    """`NAME[:ARGS]` or `PATH[:ARGS]` -> `PATH[:ARGS]`; an unknown name lists the known ones."""
    target, sep, args = spec.partition(":")
    path = pathlib.Path(target)
    if path.suffix != ".py":
        path = DIRECTORY / f"{target}.py"
        if target.startswith("_") or not path.is_file():
            raise ConfigError(f"Unknown config {target!r}; known configs: {', '.join(names())}.")
    elif not path.is_file():
        raise ConfigError(f"Config file {target} does not exist.")
    return f"{path}{sep}{args}"


def resolve_argv(argv: list[str], flag: str = "config") -> list[str]:
    """Rewrites `--config=NAME[:ARGS]` (or `--config NAME`) in `argv` to its file path."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            argv[i] = f"--{flag}=" + resolve(arg.split("=", 1)[1])
        elif arg == f"--{flag}" and i + 1 < len(argv):
            argv[i + 1] = resolve(argv[i + 1])
    return argv


def get_config(spec: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """Loads a config the way `--config=SPEC --config.KEY=VALUE ...` does on the command line.

    Example: `get_config("cifar_plain56:smoke", {"train.steps": 20})`.
    """
    from absl import flags

    flag_values = flags.FlagValues()
    argv = [sys.argv[0], f"--config={resolve(spec)}"]
    argv += [f"--config.{key}={value}" for key, value in (overrides or {}).items()]
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    try:
        flag_values(argv)
    except flags.Error as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except (AttributeError, KeyError) as e:
        raise ConfigError(unknown_field_message(e)) from None
    return flag_values.config


def unknown_field_message(error: Exception) -> str:
    """One sentence for ml_collections' error on overriding a field a config lacks."""
    field, _, hint = str(error).replace("\\n", "\n").partition("\n")
    field, hint = field.strip("\\'\" "), hint.strip("\\'\" ")
    return f"The config has no field {field!r}." + (f" {hint}" if hint else "")
