"""One inference API over every backend: Session(DIR or file, backend=...).run(input_ids, attention_mask).

numpy in -> numpy out; torch tensors in -> torch tensors out (CUDA tensors stay on the device).

No torch here: this package, and everything it imports, runs with numpy, onnx, ONNX Runtime, Polygraphy and
onnx-graphsurgeon only (and TensorRT where present); pyproject.toml's import contract forbids torch in its import
graph. A caller who passes torch tensors has loaded torch already: the runtime takes that module from sys.modules.

Every bad argument raises a ModExportError subclass with one sentence (mod_export/runtime/checks.py,
mod_export/generation/arguments.py): UsageError for Session's own options (backend, form, providers, threads, ...)
and for a call on a closed Session, InputError for what the model is given. Token ids must be integers in
[0, vocab) (prompts and stop tokens too), the mask must have their shape and hold only 0 and 1, input_ids and
attention_mask are both torch or both numpy. Files of an export directory are checked against the sha256 values
of its manifest.json (skip_integrity=True for a file edited on purpose).

Lifetime: close() (or leaving a `with` block) is final; any later call raises UsageError, closing twice is fine.

Threads: one Session may be used from many threads at once on the ONNX Runtime backend, as ONNX Runtime's
InferenceSession.Run promises; so may generate() and stream(): each call has a cache of its own over the shared
step-graph session (docs/serving.md). The TensorRT backend owns one execution context, so its runs are
serialised with a lock, and so are its generations (use one Session per thread for parallel TensorRT work).
"""

from mod_export.runtime.checks import FORMS
from mod_export.runtime.session import Session

__all__ = ["FORMS", "Session"]
