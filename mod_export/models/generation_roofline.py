"""A roofline model of one decode step (docs/generation.md): at small batch a step is bound by the bytes it moves
(the weights of the blocks it runs, and the KV cache it reads), not by FLOPs. A routed block saves its weight
reads only when no row of the batch takes it, so MoD's advantage shrinks as the batch grows.

    time(step) = max(bytes / bandwidth, flops / gemm_rate), per block, summed

The bandwidth and GEMM rate are measured on the machine that runs the benchmark (mod_export.bench.generation)."""

from __future__ import annotations

from dataclasses import dataclass

from mod_export.models.config import MoDConfig

FLOAT_BYTES = 4


@dataclass(frozen=True)
class Machine:
    bandwidth: float  # bytes per second a large copy sustains (read + write counted)
    gemm_rate: float  # FLOP per second of a decode-shaped matrix product


def block_weights(cfg: MoDConfig) -> int:
    """Parameters of one block (norms, attention, MLP)."""
    return cfg.block_parameters()


def block_step_cost(cfg: MoDConfig, rows: int, cache_len: float) -> tuple[float, float]:
    """(bytes, FLOPs) of one block for `rows` new tokens attending to `cache_len` cached entries each."""
    weights = block_weights(cfg)
    kv = 2 * cfg.kv_heads * (cfg.d_model // cfg.n_heads) * FLOAT_BYTES  # one cached token: key and value
    bytes_moved = weights * FLOAT_BYTES + rows * cache_len * kv + rows * kv
    flops = 2 * rows * weights + rows * 4 * cache_len * cfg.d_model
    return bytes_moved, flops


def step_time(
    cfg: MoDConfig, batch: int, context: float, take_rates: dict[int, float], machine: Machine, routing: bool = True
) -> float:
    """Ideal seconds of one decode step at `batch` rows with `context` earlier tokens per row. take_rates: per
    routed block, the fraction of tokens that take it (ignored for the dense twin, routing=False)."""
    total = 0.0
    for layer in range(cfg.n_layers):
        rate = take_rates.get(layer) if routing else None
        if rate is None:  # a dense block: every step, every row, the whole context
            cache, any_row = context, 1.0
        else:  # runs when any row takes it (then for every row of the batch), over a cache of the taken tokens
            cache, any_row = context * rate, 1.0 - (1.0 - rate) ** batch
        bytes_moved, flops = block_step_cost(cfg, batch, cache)
        total += any_row * max(bytes_moved / machine.bandwidth, flops / machine.gemm_rate)
    head = cfg.vocab_size * cfg.d_model
    total += max((2 * head * FLOAT_BYTES) / machine.bandwidth, 2 * batch * head / machine.gemm_rate)  # embed + head
    return total


def kv_bytes_per_token(cfg: MoDConfig, take_rates: dict[int, float], routing: bool = True) -> float:
    """Cache bytes one generated token adds, over every layer."""
    per_layer = 2 * cfg.kv_heads * (cfg.d_model // cfg.n_heads) * FLOAT_BYTES
    return sum(per_layer * (take_rates.get(layer, 1.0) if routing else 1.0) for layer in range(cfg.n_layers))
