"""Model configuration: one dataclass, validated, serialisable to plain Python types for checkpoints."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from mod_export.contract import MIN_CAPACITY
from mod_export.errors import ConfigError

GATES = ("sigmoid", "identity")
ARCHITECTURES = ("gpt", "llama")  # gpt: LayerNorm, GELU, biases; llama: RMSNorm, SwiGLU, grouped-query attention


def parse_capacity(capacity: str | Fraction | tuple[int, int]) -> tuple[int, int]:
    """'1/8', Fraction(1, 8) or (1, 8) -> (1, 8): the one capacity parser (model configs and the public routing
    ops). Capacity is a rational num/den with MIN_CAPACITY (1/1024) <= num/den <= 1; floats are refused.

    A float capacity silently specialises k at export time (docs/design.md (routing semantics, step 3)).
    """
    if isinstance(capacity, Fraction):
        num, den = capacity.numerator, capacity.denominator
    elif isinstance(capacity, str):
        text = capacity.strip()
        parts = text.split("/")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ConfigError(f"capacity must be a rational 'num/den' such as '1/8', got {capacity!r}")
        num, den = int(parts[0]), int(parts[1])
    elif isinstance(capacity, tuple) and len(capacity) == 2 and all(type(p) is int for p in capacity):
        num, den = capacity
    else:
        raise ConfigError(
            f"capacity must be a string 'num/den', a Fraction or (num, den) (not {type(capacity).__name__}), "
            f"got {capacity!r}"
        )
    if den <= 0 or num <= 0 or num > den:
        raise ConfigError(f"capacity {num}/{den} must satisfy 0 < num <= den")
    low_num, low_den = MIN_CAPACITY
    if num * low_den < low_num * den:
        raise ConfigError(
            f"capacity {num}/{den} is below the smallest supported capacity {low_num}/{low_den}: a routed block "
            f"would take a single token of every sequence up to {den // num} tokens"
        )
    return num, den


def _check_number(name: str, value: Any, positive: bool) -> None:
    """A finite real number, > 0 (positive) or >= 0; bools and strings are refused."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (value <= 0 if positive else value < 0)
    ):
        kind = "a finite positive number" if positive else "a finite non-negative number"
        raise ConfigError(f"config.{name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class MoDConfig:
    vocab_size: int = 256
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    d_mlp: int = 512
    rope_base: float = 10000.0
    capacity: str = "1/8"
    # Which blocks are routed; None means every other block starting with the second (1, 3, 5, ...).
    routed_layers: tuple[int, ...] | None = None
    gate: str = "sigmoid"
    causal_predictor: bool = True
    aux_loss: bool = False  # router auxiliary BCE on top-k membership (the paper's first causal-sampling method)
    aux_loss_weight: float = 0.01
    predictor_hidden: int = 64
    layer_norm_eps: float = 1e-5
    arch: str = "gpt"
    n_kv_heads: int | None = None  # llama: key/value heads (grouped-query attention); None = n_heads
    tie_embeddings: bool = False  # the LM head shares the embedding matrix
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_mlp", "predictor_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.arch, str) or self.arch not in ARCHITECTURES:
            raise ConfigError(f"config.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.n_kv_heads is not None:
            if isinstance(self.n_kv_heads, bool) or not isinstance(self.n_kv_heads, int) or self.n_kv_heads <= 0:
                raise ConfigError(f"config.n_kv_heads must be a positive integer or null, got {self.n_kv_heads!r}")
            if self.arch != "llama" and self.n_kv_heads != self.n_heads:
                raise ConfigError("config.n_kv_heads other than n_heads needs arch 'llama' (grouped-query attention)")
            if self.n_heads % self.n_kv_heads:
                raise ConfigError(f"config.n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"config.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError("config: head width d_model/n_heads must be even for rotary embeddings")
        _check_number("rope_base", self.rope_base, positive=True)
        _check_number("layer_norm_eps", self.layer_norm_eps, positive=True)
        _check_number("aux_loss_weight", self.aux_loss_weight, positive=False)
        for name in ("causal_predictor", "aux_loss", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config.{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"config.extra must be a mapping, got {type(self.extra).__name__}")
        if not isinstance(self.gate, str) or self.gate not in GATES:
            raise ConfigError(f"config.gate must be one of {GATES}, got {self.gate!r}")
        parse_capacity(self.capacity)
        if self.routed_layers is not None:
            if not isinstance(self.routed_layers, (tuple, list)):
                raise ConfigError(f"config.routed_layers must be a list of block indices, got {self.routed_layers!r}")
            layers = tuple(self.routed_layers)
            if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_layers for i in layers):
                raise ConfigError(f"config.routed_layers {layers} must be block indices in [0, {self.n_layers})")
            if len(set(layers)) != len(layers):
                raise ConfigError(f"config.routed_layers {layers} has duplicates")
            object.__setattr__(self, "routed_layers", tuple(sorted(layers)))

    @property
    def capacity_fraction(self) -> tuple[int, int]:
        return parse_capacity(self.capacity)

    @property
    def routed(self) -> tuple[int, ...]:
        return tuple(self._routed_indices())

    @property
    def routed_count(self) -> int:
        """len(self.routed) without building the tuple: a config with n_layers=2**31 is refused by the memory check,
        which calls this, instead of allocating a 2**30-element tuple (about 40 GB) first."""
        return len(self._routed_indices())

    def _routed_indices(self) -> range | tuple[int, ...]:
        return range(1, self.n_layers, 2) if self.routed_layers is None else self.routed_layers

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def block_parameters(self) -> int:
        """Parameters of one block of this architecture (norms, attention, MLP)."""
        D, F = self.d_model, self.d_mlp
        if self.arch == "llama":
            kv = self.kv_heads * (D // self.n_heads)
            return 2 * D + (D * D + 2 * D * kv + D * D) + 3 * D * F  # 2 RMSNorm, q/k/v/o, SwiGLU
        return 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * F + F) + (F * D + D)  # 2 LN, qkv, proj, MLP

    def parameter_count(self) -> int:
        """Parameters of MoDTransformer(self), computed from the config alone (before anything is allocated)."""
        D, V, H = self.d_model, self.vocab_size, self.predictor_hidden
        routed = D + 1 + ((D * H + H) + (H + 1) if self.causal_predictor else 0)  # router (+ predictor)
        final_norm = D if self.arch == "llama" else 2 * D
        head = 0 if self.tie_embeddings else D * V
        return V * D + self.n_layers * self.block_parameters() + self.routed_count * routed + final_norm + head

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["routed_layers"] = None if self.routed_layers is None else list(self.routed_layers)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> MoDConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config has unknown keys: {', '.join(unknown)}")
        values = dict(data)
        if isinstance(values.get("routed_layers"), list):
            values["routed_layers"] = tuple(values["routed_layers"])
        try:
            return cls(**values)
        except TypeError as exc:  # wrong value types reach dataclass machinery
            raise ConfigError(f"config is invalid: {exc}") from None

    def replace(self, **changes: Any) -> MoDConfig:
        return dataclasses.replace(self, **changes)
