"""The scoring model for Triton's Python backend: each dynamic batch's requests become one runtime call
(mod_export.serving.batching), logits go back per request, and a bad request gets its own error response while
the good ones of the same batch are served.

The model folder that `mod-export --target triton` writes holds a two-line model.py that subclasses ScoringModel,
config.pbtxt, and in version folder 1/ the ONNX file with a manifest.json of its own. Every path is relative to
the folder Triton hands to initialize(), so the repository can be copied to another machine. The Triton module
(`triton_python_backend_utils`, only importable inside the Python backend's stub) is passed in by model.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from mod_export.contract import ATTENTION_MASK, INPUT_IDS, LOGITS, VERSION
from mod_export.errors import InputError, ModExportError
from mod_export.runtime import Session
from mod_export.serving.batching import Request, merge

logger = logging.getLogger(__name__)

FORMS = ("portable", "plugin")


def parameter(config: dict, key: str, default: str) -> str:
    """A string parameter of config.pbtxt (`parameters { key: ... value { string_value: ... } }`)."""
    return str(((config.get("parameters") or {}).get(key) or {}).get("string_value", default))


def int_parameter(config: dict, key: str, default: int, minimum: int) -> int:
    raw = parameter(config, key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ModExportError(f"config.pbtxt parameter {key} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ModExportError(f"config.pbtxt parameter {key} must be >= {minimum}, got {value}")
    return value


class ScoringModel:
    """Triton's TritonPythonModel contract (initialize / execute / finalize). `pb_utils`: set by model.py."""

    pb_utils = None
    exported_with: str | None = None  # the mod-export version that wrote the repository (model.py sets it)

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / str(args["model_version"])
        if self.exported_with and self.exported_with != VERSION:
            logger.warning("repository written by mod-export %s, served by mod-export %s", self.exported_with, VERSION)
        form = parameter(config, "form", "portable")
        if form not in FORMS:
            raise ModExportError(f"config.pbtxt parameter form must be one of {FORMS}, got {form!r}")
        threads = int_parameter(config, "intra_op_threads", 0, 0)
        self.max_seq_len = int_parameter(config, "max_seq_len", 4096, 1)
        self.session = Session(folder, backend="onnxruntime", form=form, threads=threads or None)
        self.runtime_calls = 0  # one per merged group: what the unit tests count
        logger.info("serving %s (%s form, vocab %s) from %s", config.get("name"), form, self.session.vocab, folder)

    # ------------------------------------------------------------ one request

    def _array(self, request, name: str, required: bool) -> np.ndarray | None:
        tensor = self.pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            if required:
                raise InputError(f"missing required input {name}")
            return None
        return tensor.as_numpy()

    def check(self, request, position: int) -> Request:
        """The request's inputs, checked as Session.run checks them, plus the served length limit."""
        ids = self._array(request, INPUT_IDS, True)
        mask = self._array(request, ATTENTION_MASK, False)
        if ids.ndim == 2 and ids.shape[1] > self.max_seq_len:
            raise InputError(
                f"input_ids holds {ids.shape[1]} tokens, more than this model's limit of {self.max_seq_len} "
                "(max_seq_len in config.pbtxt)"
            )
        ids, mask = self.session.check_inputs(ids, mask)
        return Request(position, ids, mask)

    # ------------------------------------------------------------ Triton's entry points

    def _error(self, message: str, invalid: bool = True):
        pb = self.pb_utils
        code = getattr(pb.TritonError, "INVALID_ARG" if invalid else "INTERNAL", None)
        error = pb.TritonError(message, code) if code is not None else pb.TritonError(message)
        return pb.InferenceResponse(output_tensors=[], error=error)

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        good = []
        for position, request in enumerate(requests):
            try:
                good.append(self.check(request, position))
            except ModExportError as exc:
                responses[position] = self._error(str(exc))
        for group in merge(good):
            try:
                self.runtime_calls += 1
                logits = self.session.run(group.input_ids, group.attention_mask)  # [sum b, T, V]
            except Exception as exc:  # the runtime failed for the whole group: answer each of its requests
                logger.exception("runtime call failed for %d request(s)", len(group.requests))
                invalid = isinstance(exc, InputError)
                for request in group.requests:
                    responses[request.position] = self._error(f"{type(exc).__name__}: {exc}", invalid)
                continue
            for position, rows in group.split(logits):
                tensor = self.pb_utils.Tensor(LOGITS, np.ascontiguousarray(rows, dtype=np.float32))
                responses[position] = self.pb_utils.InferenceResponse(output_tensors=[tensor])
        return responses

    def finalize(self) -> None:
        self.session = None
