// Host launcher of the MoDScatter kernels: the one boundary between the plugin glue and CUDA.
#pragma once

#include "../common/modKernelTypes.h"
#include "../common/modRouting.h"

#include <cuda_runtime_api.h>

namespace mod_export
{

//! out = x (skipped when out == x), then out[b, idx[b,j], :] = xSel + g(sSel) * (ySel - xSel) computed
//! in float32 and stored in the element type. Indices are unique per row, so no atomics.
cudaError_t launchScatter(void const* x, ElementType type, int32_t const* idx, void const* xSel, void const* ySel,
    float const* sSel, int64_t B, int64_t T, int64_t D, int64_t k, Gate gate, void* out, cudaStream_t stream);

} // namespace mod_export
