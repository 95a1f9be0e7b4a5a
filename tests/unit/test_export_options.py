"""The one options object of the export job (mod_export/pipeline/options.py): the CLI's flags are generated from its
fields and map back onto them, the API takes its fields as keywords and refuses any other, and a bad value is a
UsageError naming the field, whichever door it came through."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import mod_export
from mod_export.backends.trt.builder import EngineSettings, ShapeRange
from mod_export.cli.export import options_from
from mod_export.cli.main import build_parser
from mod_export.errors import UsageError
from mod_export.exporter.triton import TritonSettings
from mod_export.pipeline import ExportOptions


def parsed(*argv: str) -> ExportOptions:
    parser, rest = build_parser(["model.pt", "--out", "out", *argv])
    return options_from(parser.parse_args(rest))


def test_every_field_with_a_flag_is_on_the_command_line_and_the_defaults_agree():
    parser, _ = build_parser(["model.pt"])
    flags = {flag for action in parser._actions for flag in action.option_strings}
    fields = dataclasses.fields(ExportOptions)
    assert {f.metadata["flag"] for f in fields if f.metadata["flag"]} <= flags
    default = parsed("--target", "onnx")
    assert default == ExportOptions(target="onnx")


def test_flags_map_onto_their_fields():
    options = parsed(
        "--target",
        "triton",
        "--no-validate",
        "--no-decode",
        "--precision",
        "int8",
        "--calib-windows",
        "7",
        "--routing-guard",
        "0",
        "--plugin-library",
        "lib.so",
        "--batch",
        "1:2:4",
        "--triton-slots",
        "3",
    )
    assert (options.target, options.validate, options.decode, options.precision) == ("triton", False, False, "int8")
    assert options.calib_windows == 7 and options.routing_guard is None  # 0 turns the guard off
    assert options.plugin_library == Path("lib.so")
    assert options.engine.batch == ShapeRange(1, 2, 4) and options.triton.slots == 3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"target": "tflite"}, "target must be one of onnx, trt, triton"),
        ({"opset": 18.0}, "opset must be an integer"),
        ({"calib_windows": 0}, "calib_windows must be an integer >= 1"),
        ({"routing_guard": 2}, "routing_guard must be None or a number in [0, 1]"),
        ({"engine": {"batch": 2}}, "engine must be None or EngineSettings"),
        ({"validate": "no"}, "validate must be True or False"),
    ],
)
def test_a_bad_value_names_its_field(changes, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ExportOptions(**changes)


def test_the_api_takes_the_fields_as_keywords_and_nothing_else(tmp_path):
    with pytest.raises(UsageError, match="unknown export option 'presicion'; the options are target, force"):
        mod_export.export("model.pt", None, tmp_path / "out", presicion="fp16")
    with pytest.raises(UsageError, match="either options=ExportOptions"):
        mod_export.export("model.pt", None, tmp_path / "out", options=ExportOptions(), force=True)
    assert not (tmp_path / "out").exists()


def test_the_callers_settings_objects_are_never_changed():
    engine, triton = EngineSettings(show_progress=False), TritonSettings()
    options = ExportOptions(engine=engine, triton=triton)
    settings = options.engine_settings()
    settings.extra_outputs = ("idx",)
    assert settings is not engine and engine.extra_outputs == ()
    assert ExportOptions().triton is not ExportOptions().triton  # each gets its own
