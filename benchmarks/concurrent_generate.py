"""Concurrent Session.generate calls on one Session: each call with a cache of its own (what Session does) against
the same calls serialised with a lock, and against one thread (docs/serving.md, "One Session, many threads").

    python benchmarks/concurrent_generate.py EXPORT_DIR [--threads 2] [--requests 16] [--new-tokens 32]
        [--prompt-len 16] [--intra-op 1] [--rounds 3]

Prints, per round, the wall time of the same requests in each mode (the modes alternate in order each round) and
the requests per second; every mode's tokens are checked against the serial ones."""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from mod_export.runtime import Session


def run_mode(session: Session, requests: list[dict], threads: int, lock: threading.Lock | None) -> tuple[float, list]:
    results: list = [None] * len(requests)
    cursor = iter(range(len(requests)))
    take = threading.Lock()

    def worker():
        while True:
            with take:
                i = next(cursor, None)
            if i is None:
                return
            if lock is None:
                results[i] = session.generate(**requests[i]).tokens
            else:
                with lock:
                    results[i] = session.generate(**requests[i]).tokens

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--threads", type=int, default=2, help="caller threads (default 2)")
    parser.add_argument("--requests", type=int, default=16, help="generate calls per mode (default 16)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens per call (default 32)")
    parser.add_argument("--prompt-len", type=int, default=16, help="prompt tokens per call (default 16)")
    parser.add_argument("--intra-op", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, modes alternating (default 3)")
    args = parser.parse_args()
    session = Session(args.export_dir, threads=args.intra_op)
    rng = np.random.default_rng(0)
    vocab = session.vocab or 256
    requests = [
        {"prompts": [int(t) for t in rng.integers(0, vocab, args.prompt_len)], "max_new_tokens": args.new_tokens}
        for _ in range(args.requests)
    ]
    session.generate(**requests[0])  # load the generation graphs outside the timings
    modes = {
        "one thread": (1, None),
        f"{args.threads} threads, a cache per call": (args.threads, None),
        f"{args.threads} threads, serialised by a lock": (args.threads, threading.Lock()),
    }
    reference = None
    for round_ in range(args.rounds):
        order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
        for name in order:
            threads, lock = modes[name]
            seconds, results = run_mode(session, requests, threads, lock)
            reference = reference or results
            assert results == reference, f"{name}: tokens differ from the first mode's"
            print(f"round {round_ + 1}: {name:<40} {seconds:7.2f} s  {len(requests) / seconds:6.2f} requests/s")


if __name__ == "__main__":
    main()
