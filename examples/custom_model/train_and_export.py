"""Train the user-written model of model.py for a few seconds on real text, then export it twice:
through the Python API (mod_export.export) and through a .pt2 archive and the command line.

    python examples/custom_model/train_and_export.py --out /tmp/custom [--steps 60]

Writes OUT/api/ and OUT/pt2/ (each: model.onnx, model.plugin.onnx, report.json, manifest.json) and
OUT/model.pt2; exits non-zero if either export fails validation.
"""

from __future__ import annotations

import argparse
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import PostLNByteLM  # noqa: E402

import mod_export  # noqa: E402
from mod_export.data.corpus import load_stdlib_corpus, random_windows  # noqa: E402

log = logging.getLogger("custom_model")


def train(steps: int, seed: int) -> tuple[PostLNByteLM, float]:
    """A few seconds of next-byte training; returns the model and its held-out bits per byte."""
    torch.manual_seed(seed)
    corpus = load_stdlib_corpus(max_train_bytes=2_000_000, max_held_bytes=200_000)
    model = PostLNByteLM()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    start = time.time()
    for step in range(steps):
        batch = torch.from_numpy(random_windows(corpus.train, 16, 129, rng).astype(np.int64))  # [16,129]
        logits = model(batch[:, :-1])  # [16,128,256]
        loss = F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            log.info("step %d/%d  loss %.3f  (%.0f s)", step + 1, steps, loss.item(), time.time() - start)
    model.eval()
    held = torch.from_numpy(random_windows(corpus.held_out, 16, 129, np.random.default_rng(1)).astype(np.int64))
    with torch.no_grad():
        nll = F.cross_entropy(model(held[:, :-1]).reshape(-1, 256), held[:, 1:].reshape(-1))
    return model, float(nll) / math.log(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model, bpb = train(args.steps, args.seed)
    log.info("held-out bits/byte after %d steps: %.3f", args.steps, bpb)

    example = torch.randint(0, 256, (2, 48))
    result = mod_export.export(model, (example, torch.ones_like(example)), args.out / "api", force=True)
    log.info(
        "API export: passed=%s, %d routed blocks, files %s", result.passed, result.routed_blocks, sorted(result.files)
    )

    archive = mod_export.save_archive(model, args.out / "model.pt2", (example, torch.ones_like(example)))
    command = [sys.executable, "-m", "mod_export.cli.main", str(archive), "--target", "onnx"]
    command += ["--out", str(args.out / "pt2"), "--force", "--unsafe-load"]
    log.info("CLI export of the archive: %s", " ".join(command[2:]))
    cli = subprocess.run(command)
    return 0 if result.passed and cli.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
