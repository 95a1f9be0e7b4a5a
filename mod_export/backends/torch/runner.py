"""The PyTorch reference as a Polygraphy runner: any torch module `model(input_ids, attention_mask) -> logits`
whose routed blocks route through mod-export's ops, on the CPU, with its routing recorded and optionally forced.

    with TorchRunner(model) as ref:
        out = ref.infer(feed)                      # logits, scores:l, idx:l
        forced = ref.infer(feed, forced_idx=idx)   # the same, gathering the candidate's tokens
        plain = ref.infer(feed, capture=False)     # logits only: what a benchmark times
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from mod_export.contract import ATTENTION_MASK, INPUT_IDS, INPUT_NAMES, LOGITS
from mod_export.models.capture import RoutingCapture


class TorchRunner(BaseRunner):
    """Polygraphy's PytRunner moves inputs to CUDA; this one runs the reference on the CPU, under no_grad."""

    def __init__(self, model, name: str = "torch"):
        super().__init__(name=name, prefix="torch-runner")
        self.model = model
        self.last_capture: RoutingCapture | None = None

    def activate_impl(self):
        pass

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for input_name in INPUT_NAMES:
            meta.add(input_name, np.int64, (-1, -1))
        return meta

    def infer_impl(self, feed_dict, forced_idx=None, capture: bool = True):
        ids = torch.from_numpy(np.ascontiguousarray(feed_dict[INPUT_IDS]))
        mask = torch.from_numpy(np.ascontiguousarray(feed_dict[ATTENTION_MASK]))
        start = time.perf_counter()
        if not capture:
            with torch.inference_mode():
                logits = self.model(ids, mask)
            self.inference_time = time.perf_counter() - start
            return OrderedDict([(LOGITS, logits.numpy())])
        with torch.no_grad(), RoutingCapture(forced=forced_idx) as recorded:
            logits = self.model(ids, mask)
        self.inference_time = time.perf_counter() - start
        self.last_capture = recorded
        out = OrderedDict([(LOGITS, logits.float().numpy())])
        for layer, record in enumerate(recorded.records):
            out[f"scores:{layer}"] = record.scores
            out[f"idx:{layer}"] = record.idx
        return out

    def deactivate_impl(self):
        pass
