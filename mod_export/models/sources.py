"""Where a model comes from (docs/models.md): a mod_export/1 checkpoint, a safetensors folder, a `.pt2`
archive of any model that calls mod_export.ops, or a live nn.Module from Python. Each becomes one LoadedModel:
the eager module that validation compares against, plus the torch.export program when the source is one.

The model contract for every source: forward(input_ids[B,T] int64, attention_mask[B,T] int64) -> logits[B,T,V].
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from mod_export import output
from mod_export.contract import TOKENIZER_FILE
from mod_export.errors import CheckpointError, UsageError
from mod_export.models import torch_ops
from mod_export.models.capture import RoutingCapture
from mod_export.models.checkpoint import load_checkpoint_and_tokenizer
from mod_export.models.model import MoDTransformer, RoutedBlock
from mod_export.models.safetensors_folder import is_model_folder, load_folder

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIX = ".pt2"
EXAMPLE_SHAPE = (2, 48)  # (B, T) traced when the caller gives no example inputs; both axes stay dynamic
TOPK_GATHER_TARGET = torch.ops.mod_export.topk_gather.default
_ = torch_ops  # the custom ops must be registered before a .pt2 that uses them is loaded


@dataclass
class LoadedModel:
    module: nn.Module  # eval mode; forward(input_ids, attention_mask) -> logits [B,T,V]
    source: str  # what it was loaded from, for reports
    kind: str  # "checkpoint" | "safetensors" | "pt2" | "module"
    program: torch.export.ExportedProgram | None = None  # .pt2 sources: exported as archived
    example_inputs: tuple[torch.Tensor, torch.Tensor] | None = None  # (input_ids, attention_mask) to trace with
    tokenizer: Path | None = None  # a model folder's tokenizer.json, copied into the export

    @property
    def builtin(self) -> MoDTransformer | None:
        """The module when it is one of the project's own architectures (generation export, FLOPs, config)."""
        return self.module if isinstance(self.module, MoDTransformer) else None

    def parameter_count(self) -> int:
        tensors = self.program.state_dict.values() if self.program is not None else self.module.parameters()
        return sum(t.numel() for t in tensors)

    def routed_count(self) -> int:
        """Routing calls per forward: routed blocks of a built-in model, MoDTopKGather calls of any other."""
        builtin = self.builtin
        if builtin is not None:
            return sum(isinstance(b, RoutedBlock) for b in builtin.blocks) if builtin.routing_enabled else 0
        if self.program is not None:
            return sum(
                1 for n in self.program.graph.nodes if n.op == "call_function" and n.target == TOPK_GATHER_TARGET
            )
        return len(self.capture_once().records)

    def capacity_denominators(self) -> list[int]:
        if self.builtin is not None:
            return [self.builtin.config.capacity_fraction[1]]
        if self.program is not None:
            return [int(n.args[4]) for n in self.program.graph.nodes if n.target == TOPK_GATHER_TARGET]
        return [r.capacity[1] for r in self.capture_once().records]

    def capture_once(self) -> RoutingCapture:
        """One eager forward on the example inputs with every routing call recorded (run once per LoadedModel:
        routed_count and capacity_denominators both ask; dataclasses.replace starts a new cache)."""
        if "_capture" not in self.__dict__:
            ids, mask = self.inputs()
            with torch.no_grad(), RoutingCapture() as capture:
                self.module(ids, mask)
            self.__dict__["_capture"] = capture
        return self.__dict__["_capture"]

    def vocab_size(self) -> int:
        builtin = self.builtin
        if builtin is not None:
            return builtin.config.vocab_size
        ids, mask = self.inputs()
        with torch.no_grad():
            return int(self.module(ids, mask).shape[-1])

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.example_inputs is not None:
            return self.example_inputs
        vocab = self.builtin.config.vocab_size if self.builtin is not None else 2  # ids 0/1 exist in any vocabulary
        batch, seq = EXAMPLE_SHAPE
        if self.builtin is not None:  # k >= 2 where it is traced: torch.export turns k == 1 into a guard (seq <= den)
            num, den = self.builtin.config.capacity_fraction
            seq = max(seq, den // num + 1)
        ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))
        return ids, torch.ones_like(ids)


def from_module(module: nn.Module, example_inputs=None) -> LoadedModel:
    """A live module (any class) as a source. example_inputs: (input_ids, attention_mask) or input_ids alone."""
    if not isinstance(module, nn.Module):
        raise UsageError(f"expected a torch.nn.Module, got {type(module).__name__}")
    inputs = None
    if example_inputs is not None:
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        example_inputs = tuple(example_inputs)
        if (
            not example_inputs
            or len(example_inputs) > 2
            or not all(isinstance(t, torch.Tensor) for t in example_inputs)
        ):
            raise UsageError(
                "example_inputs must be (input_ids[B,T],) or (input_ids[B,T], attention_mask[B,T]) tensors"
            )
        ids = example_inputs[0]
        if ids.dim() != 2 or ids.dtype != torch.int64:
            raise UsageError(f"example input_ids must be int64 [B,T], got {ids.dtype} {list(ids.shape)}")
        mask = example_inputs[1] if len(example_inputs) == 2 else torch.ones_like(ids)
        if tuple(mask.shape) != tuple(ids.shape):
            raise UsageError(f"attention_mask shape {list(mask.shape)} differs from input_ids {list(ids.shape)}")
        inputs = (ids, mask.to(torch.int64))
    return LoadedModel(module.eval(), f"nn.Module {type(module).__name__}", "module", example_inputs=inputs)


def load_archive(path: Path, unsafe: bool) -> LoadedModel:
    """A torch.export archive. torch.export.load unpickles parts of it (code execution), so it is refused
    without unsafe=True, before a single byte of it is deserialised."""
    if not unsafe:
        raise CheckpointError(
            f"{path} is a torch.export archive; loading one can run code it contains (torch unpickles parts of it), "
            "so it is refused: pass --unsafe-load only if you trust this file"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a torch.export archive (not a zip file; truncated or another type)")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for foreign or damaged archives
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path} could not be loaded as a torch.export archive ({type(exc).__name__}: {first})"
        ) from None
    return LoadedModel(reference_module(program), str(path), "pt2", program=program)


def reference_module(program: torch.export.ExportedProgram) -> nn.Module:
    """The archive's eager module without torch.export's input guards. Those guards (e.g. seq >= den + 1, see
    onnx_export.dynamic_shapes) are the tracer's specialisation, not limits of the model, and validation must
    run the reference at T = 1 and T < den, where the exported graphs are checked too."""
    module = program.module(check_guards=False)
    module._forward_pre_hooks.clear()  # the input-constraint check torch.export installs on the unlifted module
    return module


def load_source(path: str | os.PathLike, unsafe: bool = False) -> LoadedModel:
    """A model from a path: folder with config.json, `.pt2` archive, or mod_export/1 checkpoint."""
    path = Path(path)
    if path.is_dir():
        if not is_model_folder(path):
            raise CheckpointError(
                f"{path} is a folder without config.json: give a checkpoint file (model.pt), a .pt2 archive, "
                "or a folder with config.json + *.safetensors"
            )
        tokenizer = path / TOKENIZER_FILE
        return LoadedModel(
            load_folder(path), str(path), "safetensors", tokenizer=tokenizer if tokenizer.is_file() else None
        )
    if path.suffix == ARCHIVE_SUFFIX:
        if not path.is_file():
            raise CheckpointError(f"archive not found: {path}")
        return load_archive(path, unsafe)
    model, tokenizer = load_checkpoint_and_tokenizer(path, unsafe)
    return LoadedModel(model, str(path), "checkpoint", tokenizer=_carried_tokenizer(tokenizer))


def _carried_tokenizer(text: str | None) -> Path | None:
    """A checkpoint's tokenizer.json text (from `mod-export convert FOLDER model.pt`) as a file, as a folder has it."""
    if text is None:
        return None
    return output.write_text(output.lasting_scratch_dir(prefix="mod_export_tokenizer_") / TOKENIZER_FILE, text)


def as_source(model) -> LoadedModel:
    """A LoadedModel for whatever the exporter is given: a LoadedModel, a built-in model, or any nn.Module."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, MoDTransformer):
        return LoadedModel(model, "built-in model", "module")
    return from_module(model)
