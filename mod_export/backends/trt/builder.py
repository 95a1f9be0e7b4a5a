"""Build a TensorRT engine from an ONNX file with the Python API, for TensorRT 10.3 (JetPack 6) and 11.x.

Precision comes from the ONNX file (strongly typed networks; TensorRT 11 has no FP16/INT8 builder flags).
Flags are set by name and guarded with hasattr, since 11.0 renumbered the enums.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mod_export import output
from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.contract import DEFAULT_BATCH_RANGE, DEFAULT_SEQ_RANGE, DEFAULT_WORKSPACE_MB, INPUT_NAMES
from mod_export.errors import ModExportError


class EngineBuildError(ModExportError):
    """The ONNX parser or the builder rejected the network."""


@dataclass(frozen=True)
class ShapeRange:
    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str, what: str) -> ShapeRange:
        parts = text.split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ModExportError(f"--{what} must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
        return cls(*values)


@dataclass
class EngineSettings:
    batch: ShapeRange = field(default_factory=lambda: ShapeRange.parse(DEFAULT_BATCH_RANGE, "batch"))
    seq: ShapeRange = field(default_factory=lambda: ShapeRange.parse(DEFAULT_SEQ_RANGE, "seq-len"))
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Path | None = None
    plugin_library: Path | None = None
    show_progress: bool = True
    extra_outputs: tuple[str, ...] = ()  # tensors to mark as engine outputs too (each routed layer's idx)


def network_flags(trt) -> int:
    """STRONGLY_TYPED by name where it exists (10.3: bit 1; 11.x: deprecated no-op, always strongly typed)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def format_parser_error(error) -> str:
    """One line per parser error, naming the node (index, name, operator) where the parser says which."""
    parts = []
    node = error.node() if hasattr(error, "node") else -1
    if node is not None and node >= 0:
        parts.append(f"node {node}")
    for attr in ("node_name", "node_operator"):
        value = getattr(error, attr)() if hasattr(error, attr) else ""
        if value:
            parts.append(str(value))
    where = " ".join(parts) or "model"
    return f"{where}: {error.desc()}"


def make_progress_monitor(trt):
    """An IProgressMonitor that prints builder phases with tqdm bars (None where the API lacks it)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class TqdmProgressMonitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, tqdm] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = (
                0 if parent_phase is None else 1 + (self._bars[parent_phase].pos if parent_phase in self._bars else 0)
            )
            self._bars[phase_name] = tqdm(
                total=num_steps, desc=phase_name, position=depth, leave=depth == 0, file=sys.stderr
            )

        def step_complete(self, phase_name, step):
            if phase_name in self._bars:
                self._bars[phase_name].update(step - self._bars[phase_name].n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmProgressMonitor()


def mark_extra_outputs(network, names: tuple[str, ...]) -> None:
    """Mark the named intermediate tensors as network outputs (validation reads the engine's routing from them)."""
    wanted, found = set(names), {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            if tensor.name in wanted:
                found[tensor.name] = tensor
    missing = [n for n in names if n not in found]
    if missing:
        raise EngineBuildError(f"the parsed network has no tensor {missing[0]!r} to mark as an output")
    for name in names:
        network.mark_output(found[name])


Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input: (min, opt, max) shapes


def token_profile(settings: EngineSettings) -> Profile:
    """The scoring engine's one profile: every token input [batch, seq] over the settings' ranges."""
    b, s = settings.batch, settings.seq
    return {name: ((b.min, s.min), (b.opt, s.opt), (b.max, s.max)) for name in INPUT_NAMES}


def load_plugin_library(trt, library: Path | None) -> None:
    if library is not None and trt.get_plugin_registry().load_library(str(library)) is None:
        raise EngineBuildError(f"TensorRT could not load the plugin library {library}")


def parse_network(trt, builder, logger, onnx_path: Path) -> tuple:
    """(network, parser): the parser stays referenced while the network is built (it owns the weights)."""
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [format_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"the ONNX parser rejected {onnx_path.name} ({len(errors)} error(s)): " + " | ".join(errors)
        )
    return network, parser


def configure(trt, builder, settings: EngineSettings, profile: Profile, aliased_plugin_io: bool) -> tuple:
    """(config, timing cache bytes read, aliased plugin I/O set): workspace, the one optimisation profile, the
    timing cache, the plugin library serialised into the engine, progress, and (generation) aliased plugin I/O where
    the version has that preview feature."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    shapes = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        shapes.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(shapes)
    cache = settings.timing_cache
    cache_bytes = cache.read_bytes() if cache is not None and cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    if settings.plugin_library is not None and hasattr(config, "plugins_to_serialize"):
        config.plugins_to_serialize = [str(settings.plugin_library)]  # so the engine deserialises elsewhere
    monitor = make_progress_monitor(trt) if settings.show_progress else None
    if monitor is not None and hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor
    feature = getattr(getattr(trt, "PreviewFeature", None), "ALIASED_PLUGIN_IO_10_03", None)
    aliased = aliased_plugin_io and feature is not None and hasattr(config, "set_preview_feature")
    if aliased:
        config.set_preview_feature(feature, True)
    return config, cache_bytes, aliased


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    settings: EngineSettings,
    profile: Profile | None = None,
    aliased_plugin_io: bool = False,
) -> dict:
    """The one engine build (scoring and each generation phase): parse, configure one optimisation profile (the
    token inputs over the settings' ranges unless `profile` is given), build, write the engine (and timing cache)
    atomically. Returns what was set, for the report."""
    trt = import_tensorrt()
    require_gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugin_library(trt, settings.plugin_library)
    builder = trt.Builder(logger)
    network, _parser = parse_network(trt, builder, logger, onnx_path)
    mark_extra_outputs(network, tuple(settings.extra_outputs))
    shapes = token_profile(settings) if profile is None else profile
    config, cache_bytes, aliased = configure(trt, builder, settings, shapes, aliased_plugin_io)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build the engine for {onnx_path.name} (see the TensorRT log above)")
    output.write_bytes(engine_path, bytes(serialized))  # atomic, or straight into an export's staging folder
    if settings.timing_cache is not None:
        output.write_bytes(settings.timing_cache, bytes(config.get_timing_cache().serialize()))
    return {
        "tensorrt": getattr(trt, "__version__", None),
        "network_flags": network_flags(trt),
        "profile": {"batch": vars(settings.batch), "seq": vars(settings.seq)} if profile is None else None,
        "timing_cache": str(settings.timing_cache) if settings.timing_cache else None,
        "timing_cache_reused": bool(cache_bytes),
        "plugins_serialized": settings.plugin_library is not None and hasattr(config, "plugins_to_serialize"),
        "extra_outputs": list(settings.extra_outputs),
    } | ({"aliased_plugin_io": aliased} if aliased_plugin_io else {})
