/*
 * Host C++ reference of the MoD routing ops (docs/design.md (routing semantics)), written independently of the
 * radix-select helpers: a stable sort by score, then an ascending sort of the chosen positions.
 * float32 activations; the plugins' fp16/bf16 paths compute in float32 the same way.
 */
#pragma once

#include <cstdint>

namespace mod_export
{
namespace reference
{

//! x[B,T,D], scores[B,T], mask[B,T] (nullable; 0 = padding) -> xSel[B,k,D], idx[B,k], sSel[B,k].
void topKGather(float const* x, float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t D,
    int64_t capacityNum, int64_t capacityDen, float* xSel, int32_t* idx, float* sSel);

//! out = x; out[b, idx[b,j]] = xSel + g(sSel) * (ySel - xSel). gate: 0 identity, 1 sigmoid.
void scatter(float const* x, int32_t const* idx, float const* xSel, float const* ySel, float const* sSel, int64_t B,
    int64_t T, int64_t D, int64_t k, int32_t gate, float* out);

} // namespace reference
} // namespace mod_export
