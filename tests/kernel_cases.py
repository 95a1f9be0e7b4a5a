"""Cases and checks for the MoD kernels against the PyTorch reference `mod_export.models.routing`
(docs/design.md (routing semantics)), shared by tests/gpu/test_kernels.py (the CUDA kernels through
libmod_export_kernels.so) and tests/unit/test_kernel_harness.py (the same checks on the CPU against the
reference and against deliberately wrong stand-ins, so the GPU test is known to be able to fail).

An implementation is anything with the methods of `mod_export.kernel_abi.KernelLibrary`:
topk_select, gather_rows, topk_gather, scatter (see ReferenceKernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mod_export.models import routing

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Scatter tolerances per x dtype: the update is computed in float32 by both sides, but the kernel may fuse
# a multiply-add and uses expf for the sigmoid, so a value can round to the neighbouring x-dtype number.
TOLERANCE = {torch.float32: (1e-5, 1e-6), torch.float16: (2e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5)}


@dataclass
class Case:
    label: str
    x: torch.Tensor  # [B,T,D]
    scores: torch.Tensor  # [B,T] f32
    mask: torch.Tensor | None  # [B,T] int32
    num: int
    den: int
    gate: int

    @property
    def shape(self) -> str:
        B, T, D = self.x.shape
        return f"{self.label} B={B} T={T} D={D} {str(self.x.dtype).removeprefix('torch.')} {self.num}/{self.den}"


class ReferenceKernels:
    """The PyTorch reference behind the kernel interface (any device)."""

    def topk_select(self, scores, mask, k):
        idx = routing.select_topk(routing.mask_scores(scores, mask), k)
        return idx.to(torch.int32), torch.gather(routing.mask_scores(scores, mask), 1, idx.long())

    def gather_rows(self, x, idx):
        return routing.gather_rows(x, idx)

    def topk_gather(self, x, scores, mask, num, den):
        return routing.topk_gather(x, scores, mask, num, den)

    def scatter(self, x, idx, x_sel, y_sel, s_sel, gate, out=None):
        result = routing.scatter_update(x, idx, x_sel, y_sel, s_sel, gate)
        if out is None:
            return result
        out.copy_(result)
        return out


def _scores(rng: np.random.Generator, B: int, T: int, kind: str) -> np.ndarray:
    if kind == "ties":
        return (rng.integers(0, 3, (B, T)) * 0.5).astype(np.float32)
    if kind == "all-equal":
        return np.full((B, T), 0.25, np.float32)
    if kind == "signed-zeros":
        return np.where(rng.random((B, T)) < 0.5, np.float32(-0.0), np.float32(0.0)).astype(np.float32)
    if kind == "extremes":
        pool = np.array([-np.inf, np.inf, -1e30, 1e30, -1e-38, 1e-38, 0.0, 1.0, -1.0], np.float32)
        return rng.choice(pool, (B, T)).astype(np.float32)
    return rng.standard_normal((B, T)).astype(np.float32)


def _mask(rng: np.random.Generator, B: int, T: int, kind: str) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "all-valid":
        return np.ones((B, T), np.int32)
    if kind == "all-padding":
        return np.zeros((B, T), np.int32)
    if kind == "left-right":  # per row: a padded prefix or suffix of random length
        mask = np.ones((B, T), np.int32)
        for b in range(B):
            n = int(rng.integers(0, T + 1))
            if b % 2:
                mask[b, :n] = 0
            else:
                mask[b, T - n :] = 0
        return mask
    return (rng.random((B, T)) >= float(kind)).astype(np.int32)


def make_x(B: int, T: int, D: int, dtype: torch.dtype, device, generator: torch.Generator, misaligned: bool):
    """x[B,T,D]; `misaligned` puts it one element into its storage, off the kernels' 16-byte vector path."""
    flat = torch.randn(B * T * D + 1, generator=generator).to(dtype).to(device)
    return (flat[1:] if misaligned else flat[:-1]).view(B, T, D)


def random_cases(n: int, seed: int, device, max_t: int = 5000) -> list[Case]:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(n):
        B = int(rng.integers(1, 9))
        short = min(300, max_t)
        T = int(rng.integers(1, short + 1)) if i % 10 else int(rng.integers(short, max_t + 1))
        D = int(rng.choice([1, 2, 3, 7, 8, 16, 33, 64, 128]))
        den = int(rng.integers(1, 17))
        num = int(rng.integers(1, den + 1))
        kind = str(rng.choice(["continuous", "ties", "all-equal", "signed-zeros", "extremes"]))
        mask_kind = str(rng.choice(["none", "all-valid", "0.2", "0.7", "all-padding", "left-right"]))
        scores = torch.from_numpy(_scores(rng, B, T, kind)).to(device)
        mask = _mask(rng, B, T, mask_kind)
        cases.append(
            Case(
                f"random#{i} {kind}/{mask_kind}",
                make_x(B, T, D, DTYPES[i % 3], device, gen, misaligned=i % 7 == 0),
                scores,
                None if mask is None else torch.from_numpy(mask).to(device),
                num,
                den,
                i % 2,
            )
        )
    return cases


def edge_cases(device, large: bool = True) -> list[Case]:
    """T from 1 to 65536 (k past TensorRT's TopK limit of 3840), B up to 64, ties, all-equal rows, padding."""
    rng = np.random.default_rng(12)
    gen = torch.Generator().manual_seed(12)
    cases = []
    lengths = (1, 2, 3, 1023, 1024, 1025, 4095, 4096, 30721, 40000, 65536) if large else (1, 2, 3, 1023, 1025, 4096)
    for j, T in enumerate(lengths):
        for num, den in ((1, 8), (1, 1), (7, 8)):
            B = 3
            scores = torch.from_numpy(_scores(rng, B, T, "ties" if j % 2 else "continuous")).to(device)
            mask = torch.from_numpy(_mask(rng, B, T, "left-right")).to(device)
            cases.append(
                Case("length sweep", make_x(B, T, 8, DTYPES[j % 3], device, gen, False), scores, mask, num, den, 1)
            )
    T_big = 65536 if large else 8192
    B_big = 64 if large else 8
    for dtype in DTYPES:
        ties = torch.from_numpy((rng.integers(0, 50, (B_big, T_big)) * 0.1).astype(np.float32)).to(device)
        cases.append(Case("big batch, ties", make_x(B_big, T_big, 4, dtype, device, gen, False), ties, None, 1, 8, 1))
    for T in (4096, T_big):
        equal = torch.full((4, T), 0.5, device=device)
        cases.append(Case("all-equal rows", make_x(4, T, 16, torch.float16, device, gen, False), equal, None, 1, 4, 0))
        pad = torch.zeros(4, T, dtype=torch.int32, device=device)
        cases.append(
            Case("all-padding rows", make_x(4, T, 16, torch.bfloat16, device, gen, False), equal, pad, 1, 8, 0)
        )
        mixed = torch.from_numpy(_mask(rng, 4, T, "0.7")).to(device)
        mixed[0] = 0
        mixed[1] = 1
        cases.append(
            Case(
                "mixed padding rows",
                make_x(4, T, 64, torch.float32, device, gen, True),
                torch.randn(4, T, generator=gen).to(device),
                mixed,
                1,
                8,
                1,
            )
        )
    return cases


def _ints(t: torch.Tensor) -> str:
    return str(t.flatten()[:8].tolist())


def _cpu(t):
    return None if t is None else t.cpu()


def check_case(impl, case: Case) -> list[str]:
    """Every mismatch between `impl` and the reference on `case` (empty: it agrees). The reference runs on
    the CPU (its stable sort treats -0.0 and +0.0 as equal, as docs/design.md asks); results are compared there."""
    problems: list[str] = []
    x, scores, mask = case.x, case.scores, case.mask
    B, T, D = x.shape
    k = routing.capacity_k(T, case.num, case.den)
    cx, cscores, cmask = _cpu(x), _cpu(scores), _cpu(mask)
    ref_x, ref_idx, ref_s = routing.topk_gather(cx, cscores, cmask, case.num, case.den)

    x_sel, idx, s_sel = (t.cpu() for t in impl.topk_gather(x, scores, mask, case.num, case.den))
    if tuple(idx.shape) != (B, k) or tuple(x_sel.shape) != (B, k, D) or tuple(s_sel.shape) != (B, k):
        return [f"{case.shape}: topk_gather shapes {list(x_sel.shape)} {list(idx.shape)}, expected k={k}"]
    if not torch.equal(idx, ref_idx):
        bad = (idx != ref_idx).any(dim=1).nonzero().flatten()
        r = int(bad[0])
        problems.append(
            f"{case.shape}: idx differs in {bad.numel()} row(s), row {r}: {_ints(idx[r])} vs {_ints(ref_idx[r])}"
        )
    if not torch.equal(s_sel, ref_s):
        problems.append(f"{case.shape}: s_sel differs")
    if not torch.equal(x_sel, ref_x):
        problems.append(f"{case.shape}: x_sel differs (gather is a copy: must be bit-exact)")
    sel_idx, sel_s = (t.cpu() for t in impl.topk_select(scores, mask, k))
    if not (torch.equal(sel_idx, ref_idx) and torch.equal(sel_s, ref_s)):
        problems.append(f"{case.shape}: topk_select differs from the reference")
    dev_idx = ref_idx.to(x.device)
    if not torch.equal(impl.gather_rows(x, dev_idx).cpu(), ref_x):
        problems.append(f"{case.shape}: gather_rows differs")

    y_sel = (ref_x.float() * 1.5 - 0.25).to(x.dtype)
    expected = routing.scatter_update(cx, ref_idx, ref_x, y_sel, ref_s, case.gate)
    dev_args = (dev_idx, ref_x.to(x.device), y_sel.to(x.device), ref_s.to(x.device), case.gate)
    out = impl.scatter(x, *dev_args).cpu()
    selected = torch.zeros(B, T, dtype=torch.bool)
    selected.scatter_(1, ref_idx.long(), True)
    if not torch.equal(out[~selected], cx[~selected]):
        problems.append(f"{case.shape}: scatter changed tokens that were not selected")
    rtol, atol = TOLERANCE[x.dtype]
    got, want = out[selected].float(), expected[selected].float()
    close = ((got - want).abs() <= atol + rtol * want.abs()) | (got == want) | (got.isnan() & want.isnan())
    if not bool(close.all()):
        worst = float(((got - want).abs() - rtol * want.abs()).nan_to_num(float("inf"))[~close].max())
        problems.append(f"{case.shape}: scatter update off by up to {worst:.3g} beyond rtol {rtol}")
    in_place = x.clone()
    impl.scatter(in_place, *dev_args, out=in_place)
    if not torch.equal(in_place.cpu().nan_to_num(), out.nan_to_num()):
        problems.append(f"{case.shape}: in-place scatter (out is x) differs from the copying one")
    return problems


def check_all(impl, cases: list[Case], limit: int = 10, stop_at_first: bool = False) -> tuple[int, list[str]]:
    """(failing cases, the first `limit` problems); `stop_at_first` returns at the first failing case."""
    failing, shown = 0, []
    for case in cases:
        problems = check_case(impl, case)
        failing += bool(problems)
        shown.extend(problems[: max(0, limit - len(shown))])
        if problems and stop_at_first:
            break
    return failing, shown
