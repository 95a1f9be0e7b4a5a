"""The streaming generation model for Triton's Python backend (decoupled): one response per generated token, with
sampling parameters per request, and in-flight batching on the per-row MoD cache (mod_export.serving.inflight):
execute() only checks a request and queues it; one loop thread admits queued requests into the running batch
between decode steps, steps every busy row at once and streams each row's token to its request's sender. A request
that finishes frees its cache row; so does one that the client cancels or disconnects from (polled every 20 ms,
and a send that fails). Responses go out from sender threads while the next decode step runs.

Inputs per request: the prompt as input_ids [P] int64, or as prompt [1] string (text, through the model's codec:
its tokenizer.json, or bytes for a byte-level model); optional max_new_tokens [1] int32, temperature [1] fp32,
top_k [1] int32, top_p [1] fp32, seed [1] int64, stop_tokens [N] int64. Outputs per response: token_id [1] int64
and text [1] string (what the token completes after the prompt, streamed as Session.codec's decoder gives it;
empty without a codec); the last response carries Triton's final flag. The model folder holds model.onnx, model.step.onnx
and a manifest.json of its own in 1/, every path relative to the folder Triton gives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from mod_export.backends.onnxrt.generation_slots import SlotDecoder
from mod_export.contract import INPUT_IDS, PROMPT_TEXT, TEXT_PIECE, TOKEN_ID, TRITON_STEP_DELAY, VERSION
from mod_export.errors import InputError, ModExportError
from mod_export.generation.sampling import Sampling
from mod_export.runtime import Session
from mod_export.serving.inflight import Job, Outbox, Scheduler
from mod_export.serving.scoring import int_parameter

logger = logging.getLogger(__name__)

# input name -> (numpy dtype, default); each is [1] except stop_tokens [N]
OPTIONS = {
    "max_new_tokens": (np.int32, 64),
    "temperature": (np.float32, 0.0),
    "top_k": (np.int32, 0),
    "top_p": (np.float32, 1.0),
    "seed": (np.int64, 0),
}
STOP_TOKENS = "stop_tokens"
CANCEL_POLL_SECONDS = 0.02  # how often a running request asks the server whether it was cancelled (a round trip)
SENDER_THREADS = 2  # threads sending responses: each send is a round trip to the server, different requests' overlap
# metric name -> (kind, description, value from the scheduler). Published in this order, each a call to the server:
# busy_rows and waiting come last, so a reader who sees the model idle also sees the counters of what just ended.
METRICS = {
    "mod_export_generate_steps": ("GAUGE", "decode steps run", lambda s: s.counters.steps),
    "mod_export_generate_prefills": (
        "GAUGE",
        "prefill runs (prompts of one length share one)",
        lambda s: s.counters.prefills,
    ),
    "mod_export_generate_row_steps": ("GAUGE", "busy rows summed over decode steps", lambda s: s.counters.row_steps),
    "mod_export_generate_routed_runs": (
        "GAUGE",
        "routed (MoD) blocks that ran, summed over decode steps: a block runs when any busy row takes it",
        lambda s: s.decoder.routed_runs,
    ),
    "mod_export_generate_joined": ("GAUGE", "requests that joined a running batch", lambda s: s.counters.joined),
    "mod_export_generate_cancelled": ("GAUGE", "requests cancelled or disconnected", lambda s: s.counters.cancelled),
    "mod_export_generate_finished": ("GAUGE", "requests that finished", lambda s: s.counters.finished),
    "mod_export_generate_tokens": ("GAUGE", "tokens streamed", lambda s: s.counters.tokens),
    "mod_export_generate_model_seconds": ("GAUGE", "seconds in prefill and decode", lambda s: s.counters.model_seconds),
    "mod_export_generate_send_seconds": ("GAUGE", "seconds sending responses", lambda s: s.counters.send_seconds),
    "mod_export_generate_poll_seconds": (
        "GAUGE",
        "seconds polling cancellation",
        lambda s: s.counters.poll_seconds + s.counters.outbox_poll_seconds,
    ),
    "mod_export_generate_waiting": ("GAUGE", "requests waiting for a cache row", lambda s: len(s.waiting)),
    "mod_export_generate_busy_rows": ("GAUGE", "cache rows held by running requests", lambda s: s.busy_rows),
}


class GenerationModel:
    """Triton's TritonPythonModel contract for a decoupled model. `pb_utils`: set by model.py."""

    pb_utils = None
    exported_with: str | None = None

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / str(args["model_version"])
        if self.exported_with and self.exported_with != VERSION:
            logger.warning("repository written by mod-export %s, served by mod-export %s", self.exported_with, VERSION)
        threads = int_parameter(config, "intra_op_threads", 0, 0)
        slots = int_parameter(config, "max_slots", 16, 1)
        context = int_parameter(config, "max_context", 512, 2)
        delay_ms = int_parameter(config, TRITON_STEP_DELAY, 0, 0)
        self.session = Session(folder, backend="onnxruntime", threads=threads or None)
        stepper = self.session.generation_stepper()
        _ = self.session.codec  # a tokenizer.json is loaded (and checked) now, not at the first text request
        self.context = min(context, self.session.max_context or context)
        self._published = None
        self.scheduler = Scheduler(
            SlotDecoder(stepper, slots, self.context),
            on_change=self._publish,
            outbox=Outbox(SENDER_THREADS),  # responses go out while the next decode step runs
            poll_interval=CANCEL_POLL_SECONDS,
            step_delay=delay_ms / 1000,
        )
        self._metrics = self._make_metrics(config.get("name", "generate"))
        self.scheduler.start()
        logger.info("generation: %d slots of %d cache entries from %s", slots, self.context, folder)

    # ------------------------------------------------------------ metrics (Triton's /metrics)

    def _make_metrics(self, model: str) -> dict:
        family = getattr(self.pb_utils, "MetricFamily", None)
        if family is None:
            return {}
        self._families = {}  # a MetricFamily must outlive its Metric objects
        metrics = {}
        for name, (kind, description, _) in METRICS.items():
            self._families[name] = family(name=name, description=description, kind=getattr(family, kind))
            metrics[name] = self._families[name].Metric(labels={"model": model})
        return metrics

    def _publish(self, scheduler: Scheduler) -> None:
        """Update the metrics when a request came, went or was admitted (each update is a call to the server)."""
        c = scheduler.counters
        state = (scheduler.busy_rows, len(scheduler.waiting), c.admitted, c.finished, c.cancelled)
        if state == self._published:
            return
        self._published = state
        for name, metric in self._metrics.items():
            metric.set(float(METRICS[name][2](scheduler)))

    # ------------------------------------------------------------ one request

    def _scalar(self, request, name: str):
        dtype, default = OPTIONS[name]
        tensor = self.pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return default
        value = tensor.as_numpy()
        if value.size != 1:
            raise InputError(f"{name} must hold one value, got shape {list(value.shape)}")
        return value.reshape(-1)[0].item()

    def job(self, request, sender) -> Job:
        """The request as a Job, checked: prompt ids in the vocabulary, prompt + max_new_tokens within the cache
        row, sampling parameters in range (InputError otherwise)."""
        ids = self._prompt(request)
        self.session.check_inputs(ids.reshape(1, -1))  # int64, within the vocabulary
        options = {name: self._scalar(request, name) for name in OPTIONS}
        max_new = int(options.pop("max_new_tokens"))
        if max_new < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new}")
        if ids.size + max_new > self.context:
            raise InputError(
                f"prompt ({ids.size} tokens) + max_new_tokens ({max_new}) exceeds this model's context of "
                f"{self.context} (max_context in config.pbtxt)"
            )
        sampling = Sampling(
            float(options["temperature"]), int(options["top_k"]), float(options["top_p"]), int(options["seed"])
        )
        stops = self.pb_utils.get_input_tensor_by_name(request, STOP_TOKENS)
        stop_tokens = tuple(int(t) for t in stops.as_numpy().reshape(-1)) if stops is not None else ()
        pb = self.pb_utils
        text = self.session.codec.decoder() if self.session.codec is not None else None  # this request's stream
        if text is not None:
            text.feed(ids)  # the prompt is context, not output: a first word's space, a character split across it

        def emit(token: int, index: int, final: bool) -> None:
            piece = "" if text is None else text.feed([token]) + (text.flush() if final else "")
            outputs = [
                pb.Tensor(TOKEN_ID, np.array([token], np.int64)),
                pb.Tensor(TEXT_PIECE, np.array([piece.encode("utf-8")], np.object_)),
            ]
            sender.send(
                pb.InferenceResponse(output_tensors=outputs),
                flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0,
            )

        def cancelled() -> bool:
            check = getattr(sender, "is_cancelled", None) or getattr(request, "is_cancelled", None)
            return bool(check()) if check is not None else False

        def on_cancel(reason: str) -> None:
            sender.send(self._error(reason, "CANCELLED"), flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

        return Job([int(t) for t in ids], max_new, emit, sampling, stop_tokens, cancelled, on_cancel)

    def _prompt(self, request) -> np.ndarray:
        """The request's prompt ids [P]: input_ids, or the prompt text through the model's codec (one of the two)."""
        tensor = self.pb_utils.get_input_tensor_by_name(request, INPUT_IDS)
        text = self.pb_utils.get_input_tensor_by_name(request, PROMPT_TEXT)
        if (tensor is None) == (text is None):
            raise InputError(f"give the prompt as {INPUT_IDS} (token ids) or as {PROMPT_TEXT} (text), one of the two")
        if text is not None:
            value = text.as_numpy().reshape(-1)
            if value.size != 1:
                raise InputError(f"{PROMPT_TEXT} must hold one text, got shape {list(text.as_numpy().shape)}")
            if self.session.codec is None:
                raise InputError(
                    f"this model's vocabulary has {self.session.vocab} tokens and no tokenizer.json: send {INPUT_IDS}"
                )
            raw = value[0] if isinstance(value[0], bytes) else str(value[0]).encode("utf-8")
            ids = self.session.codec.encode(raw)
            if not ids:
                raise InputError(f"{PROMPT_TEXT} is empty: give at least one character")
            return np.asarray(ids, np.int64)
        ids = tensor.as_numpy()
        if ids.ndim == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.ndim != 1 or ids.size == 0:
            raise InputError(f"{INPUT_IDS} must be one prompt [P] with P >= 1, got shape {list(ids.shape)}")
        return ids

    def _error(self, message: str, code: str = "INVALID_ARG"):
        pb = self.pb_utils
        code_value = getattr(pb.TritonError, code, None)
        error = pb.TritonError(message, code_value) if code_value is not None else pb.TritonError(message)
        return pb.InferenceResponse(output_tensors=[], error=error)

    # ------------------------------------------------------------ Triton's entry points

    def execute(self, requests: list) -> None:
        for request in requests:
            sender = request.get_response_sender()
            try:
                self.scheduler.submit(self.job(request, sender))
            except ModExportError as exc:
                sender.send(self._error(str(exc)), flags=self.pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None

    def finalize(self) -> None:
        self.scheduler.stop()
        self._metrics = {}  # Metric objects before their families
        self._families = {}
        self.session = None
