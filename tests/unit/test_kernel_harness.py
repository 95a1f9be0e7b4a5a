"""The checks of the GPU kernel test (tests/kernel_cases.py), run on the CPU: the PyTorch reference behind
the kernel interface passes them, and deliberately wrong implementations fail them. So when
tests/gpu/test_kernels.py passes on a GPU, it is because the kernels agree, not because it cannot fail."""

from __future__ import annotations

import pytest
import torch

from mod_export.models import routing
from tests.kernel_cases import ReferenceKernels, check_all, edge_cases, random_cases


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Hundreds of small tensors: one thread is faster, and immune to OpenMP spinning on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cases():
    return random_cases(400, seed=5, device="cpu", max_t=1500) + edge_cases("cpu", large=False)


class TiesToHigherPosition(ReferenceKernels):
    def topk_gather(self, x, scores, mask, num, den):
        T = x.shape[1]
        flipped = routing.mask_scores(scores, mask).flip(-1)
        k = routing.capacity_k(T, num, den)
        idx = torch.sort((T - 1 - routing.select_topk(flipped, k)), dim=-1).values
        return routing.gather_rows(x, idx), idx.to(torch.int32), torch.gather(routing.mask_scores(scores, mask), 1, idx)


class KOffByOne(ReferenceKernels):
    def topk_gather(self, x, scores, mask, num, den):
        return routing.topk_gather(x, scores, mask, num, den + 1)


class IgnoresPadding(ReferenceKernels):
    def topk_gather(self, x, scores, mask, num, den):
        return routing.topk_gather(x, scores, None, num, den)


class UnsortedIdx(ReferenceKernels):
    def topk_gather(self, x, scores, mask, num, den):
        x_sel, idx, s_sel = routing.topk_gather(x, scores, mask, num, den)
        return x_sel.flip(1), idx.flip(1), s_sel.flip(1)


class GatherLosesPrecision(ReferenceKernels):
    def gather_rows(self, x, idx):
        return routing.gather_rows(x, idx).to(torch.bfloat16).to(x.dtype)


class UngatedScatter(ReferenceKernels):
    def scatter(self, x, idx, x_sel, y_sel, s_sel, gate, out=None):
        return super().scatter(x, idx, x_sel, y_sel, torch.zeros_like(s_sel), 1 - gate, out)


class ScatterTouchesNeighbours(ReferenceKernels):
    def scatter(self, x, idx, x_sel, y_sel, s_sel, gate, out=None):
        result = super().scatter(x, idx, x_sel, y_sel, s_sel, gate, None)
        result[:, 0] += 1.0  # position 0, selected or not
        if out is None:
            return result
        out.copy_(result)
        return out


class InPlaceDiffers(ReferenceKernels):
    def scatter(self, x, idx, x_sel, y_sel, s_sel, gate, out=None):
        if out is x:
            return out  # forgets the update when writing in place
        return super().scatter(x, idx, x_sel, y_sel, s_sel, gate, out)


def test_the_reference_passes_every_check(cases):
    failing, problems = check_all(ReferenceKernels(), cases)
    assert failing == 0, problems
    assert len(cases) > 400 and any(c.x.shape[1] >= 4096 for c in cases)


@pytest.mark.parametrize(
    "wrong",
    [
        TiesToHigherPosition,
        KOffByOne,
        IgnoresPadding,
        UnsortedIdx,
        GatherLosesPrecision,
        UngatedScatter,
        ScatterTouchesNeighbours,
        InPlaceDiffers,
    ],
)
def test_a_wrong_implementation_fails(cases, wrong):
    failing, problems = check_all(wrong(), cases, stop_at_first=True)
    assert failing > 0 and problems, wrong.__name__


def test_the_gpu_cases_cover_what_the_issue_asks_for():
    """The GPU test runs random_cases(3000) + edge_cases(large=True): check their coverage here."""
    big = edge_cases("cpu", large=True)
    Ts = [c.x.shape[1] for c in big]
    ks = [routing.capacity_k(c.x.shape[1], c.num, c.den) for c in big]
    assert min(Ts) == 1 and max(Ts) == 65536 and max(c.x.shape[0] for c in big) == 64
    assert max(ks) > 3840, "k past TensorRT's TopK limit"
    assert {c.x.dtype for c in big} == {torch.float32, torch.float16, torch.bfloat16}
    assert any(c.mask is not None and not bool(c.mask.any()) for c in big), "all-padding rows"
    assert any(bool((c.scores == c.scores[0, 0]).all()) for c in big), "all-equal rows"
    many = random_cases(3000, seed=0, device="cpu", max_t=600)
    kinds = {c.label.split(" ")[1] for c in many}
    assert {"ties/none", "all-equal/all-padding", "continuous/left-right"} <= kinds
    assert {c.x.dtype for c in many} == {torch.float32, torch.float16, torch.bfloat16}
    assert any(c.x.storage_offset() == 1 for c in many), "misaligned x for the scalar path"
