"""`mod-export` entry point: a subcommand registry plus the main form `mod-export MODEL --target T --out DIR`.

User errors print one line (`error: ...`) and exit non-zero; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Callable

from mod_export import __version__, progress
from mod_export.bench.threads import set_idle_thread_policy
from mod_export.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_USER,
    ModExportError,
    UsageError,
)

# name -> module path with `register(subparsers_or_parser) -> argparse.ArgumentParser` and `run(args) -> int`.
SUBCOMMANDS: dict[str, str] = {
    "example": "mod_export.cli.example",
    "validate": "mod_export.cli.validate",
    "build-plugins": "mod_export.cli.build_plugins",
    "bench": "mod_export.cli.bench",
    "generate": "mod_export.cli.generate",
    "convert": "mod_export.cli.convert",
}
MAIN_FORM = "mod_export.cli.export"
GLOBAL_FLAGS = ("--debug", "--quiet", "--verbose")
LIBRARY_LOGGERS = ("mod_export", "calibration")

EXIT_CODES = """exit codes:
  0 success, 1 user error (bad input, option value or output directory), 2 usage error,
  3 parity or quality failed (artifacts are written), 4 missing component (TensorRT, GPU, nvcc),
  70 internal error (a bug in mod-export), 130 interrupted
"""


TOP_HELP = (
    f"""usage: mod-export MODEL --target {{onnx,trt,triton}} --out DIR [options]
       mod-export SUBCOMMAND [options]

Export Mixture-of-Depths transformers to ONNX / TensorRT, with validated parity. (version {__version__})

main form:
  MODEL --target ...    export model.pt, a safetensors folder or a .pt2 archive (`mod-export MODEL --help`)

subcommands:
  example               train the built-in example model on real text
  validate              compare PyTorch and ONNX Runtime on exported files
  build-plugins         build libmod_export_plugins.so (TensorRT plugins) and run its host tests
  bench                 MoD vs dense twin per backend, against the FLOP ideal
  generate              generate text or tokens with an export (causal routing, MoD-aware KV cache)
  convert               a built-in model between model.pt and a config.json + safetensors folder

options:
  -h, --help            show this help and exit
  --version             show the version and exit
  --debug               show tracebacks for errors
  --quiet               only warnings and errors on stderr, no progress bars
  --verbose             debug messages of the library too
"""
    + "\n"
    + EXIT_CODES
)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (UsageError, exit 2); --help is unchanged."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EXIT_CODES)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def attach_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--prompt-ids -1,3` -> `--prompt-ids=-1,3`: argparse takes a value that starts with '-' (other than a plain
    negative number) for an option and says "expected one argument". For an option that takes one value, the next
    word is its value unless it is one of this parser's options (or an abbreviation of one)."""
    takes_value = {s for a in parser._actions if a.nargs is None and a.option_strings for s in a.option_strings}
    options = [s for a in parser._actions for s in a.option_strings]
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return out + argv[i:]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if word in takes_value and nxt is not None and nxt.startswith("-") and not _is_option(nxt, options):
            out.append(f"{word}={nxt}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _is_option(word: str, options: list[str]) -> bool:
    name = word.split("=", 1)[0]
    return name in options or (name.startswith("--") and any(o.startswith(name) for o in options))


def _load(module_path: str):
    return importlib.import_module(module_path)


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser for this command line and the arguments it should parse."""
    if argv[0] in SUBCOMMANDS:
        if argv[0] == "bench":  # OpenMP reads its wait policy once, when torch loads: set it before any import
            set_idle_thread_policy("--spinning" in argv)
        module = _load(SUBCOMMANDS[argv[0]])
        parser = OneLineArgumentParser(prog=f"mod-export {argv[0]}")
        module.register(parser)
        parser.set_defaults(func=module.run)
        return parser, argv[1:]
    module = _load(MAIN_FORM)
    parser = OneLineArgumentParser(prog="mod-export")
    module.register(parser)
    parser.set_defaults(func=module.run)
    return parser, argv


class _CliFormatter(logging.Formatter):
    """INFO lines as they are; warnings and errors of the library prefixed, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def configure_logging(level: int) -> None:
    """The library logs through `logging` (mod_export.*, calibration.*); the CLI decides what is shown, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CliFormatter())
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet, verbose = "--quiet" in argv, "--verbose" in argv
    argv = [a for a in argv if a not in GLOBAL_FLAGS]
    configure_logging(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    progress.set_enabled(not quiet)
    if not argv:
        sys.stderr.write(TOP_HELP)
        return EXIT_USAGE
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(TOP_HELP)
        return EXIT_OK
    if argv[0] == "--version":
        print(f"mod-export {__version__}")
        return EXIT_OK
    try:
        parser, rest = build_parser(argv)
        args = parser.parse_args(attach_dash_values(parser, rest))
        func: Callable[[argparse.Namespace], int] = args.func
        return int(func(args) or 0)
    except ModExportError as exc:
        return _fail(f"error: {exc}", exc.exit_code, debug)
    except KeyboardInterrupt:
        return _fail("error: interrupted", EXIT_INTERRUPTED, debug)
    except OSError as exc:  # the file system or the machine said no (permissions, disk full, ...): not a bug
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return _fail(f"error: {exc.strerror or exc}{where}", EXIT_USER, debug)
    except MemoryError:
        return _fail("error: out of memory (try a smaller batch, sequence length or model)", EXIT_USER, debug)
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        first = str(exc).splitlines()[0] if str(exc) else ""
        return _fail(
            f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            EXIT_INTERNAL,
            debug,
        )


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colour codes some libraries put in their messages


def _fail(line: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    line = ANSI_ESCAPE.sub("", line)
    print(" ".join(line.split()), file=sys.stderr)  # one line, whatever the message held
    return code


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
