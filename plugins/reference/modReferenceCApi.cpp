// A tiny C ABI over the host reference and the radix-select emulation, for Python (ctypes) tests.
#include "../common/modRadixSelect.h"
#include "modReference.h"

#include <cstdint>

#define MOD_C_API extern "C" __attribute__((visibility("default")))

MOD_C_API int64_t mod_capacity_k(int64_t T, int64_t num, int64_t den)
{
    return mod_export::capacityK(T, num, den);
}

MOD_C_API void mod_reference_topk_gather(float const* x, float const* scores, int32_t const* mask, int64_t B, int64_t T,
    int64_t D, int64_t num, int64_t den, float* xSel, int32_t* idx, float* sSel)
{
    mod_export::reference::topKGather(x, scores, mask, B, T, D, num, den, xSel, idx, sSel);
}

MOD_C_API void mod_reference_scatter(float const* x, int32_t const* idx, float const* xSel, float const* ySel,
    float const* sSel, int64_t B, int64_t T, int64_t D, int64_t k, int32_t gate, float* out)
{
    mod_export::reference::scatter(x, idx, xSel, ySel, sSel, B, T, D, k, gate, out);
}

//! The kernel's selection algorithm (shared __host__ __device__ helpers), one row at a time.
MOD_C_API void mod_radix_select(
    float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx, float* sSel)
{
    for (int64_t b = 0; b < B; ++b)
    {
        mod_export::radixSelectRowHost(
            scores + b * T, mask == nullptr ? nullptr : mask + b * T, T, k, idx + b * k, sSel + b * k);
    }
}
