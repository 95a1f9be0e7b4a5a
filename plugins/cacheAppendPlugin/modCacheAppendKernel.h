// Host launcher of the MoDCacheAppend kernel: the one boundary between the plugin glue and CUDA.
#pragma once

#include "../common/modKernelTypes.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mod_export
{

//! out = cache (skipped when out == cache: the in-place, aliased case), then for every r in rows[0..n):
//! out[r, :, length[r], :] = entry[r, :, 0, :]. cache/entry/out [B,H,S,Dh] / [B,H,1,Dh] of `type`; length[B] int32
//! (lengthIs64 = false) or int64. A row out of [0,B) or a length out of [0,S) writes nothing. n = 0 launches nothing
//! (beyond the copy when not in place).
cudaError_t launchCacheAppend(void const* cache, ElementType type, void const* entry, void const* length,
    bool lengthIs64, int32_t const* rows, int64_t n, int64_t B, int64_t H, int64_t S, int64_t Dh, void* out,
    cudaStream_t stream);

} // namespace mod_export
