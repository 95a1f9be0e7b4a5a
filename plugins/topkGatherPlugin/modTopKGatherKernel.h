// Host launcher of the MoDTopKGather kernels: the one boundary between the plugin glue and CUDA.
#pragma once

#include "../common/modKernelTypes.h"

#include <cuda_runtime_api.h>

namespace mod_export
{

//! Per row of scores[B,T] (f32, mask[B,T] int32 nullable): the k best positions (ties to the lower
//! position) into idx[B,k] (int32, ascending) and sSel[B,k] (f32, -inf at padding); then gathers
//! The selection alone: idx[B,k] and sSel[B,k] as above (one 1024-thread block per row).
cudaError_t launchTopKSelect(float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx,
    float* sSel, cudaStream_t stream);

//! xSel[B,k,D] = x[b, idx[b,j], :]. No host synchronisation; no workspace.
cudaError_t launchTopKGather(void const* x, ElementType type, float const* scores, int32_t const* mask, int64_t B,
    int64_t T, int64_t D, int64_t k, void* xSel, int32_t* idx, float* sSel, cudaStream_t stream);

//! The selection alone: idx[B,k] and sSel[B,k] as above (one 1024-thread block per row).
cudaError_t launchTopKSelect(float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx,
    float* sSel, cudaStream_t stream);

//! xSel[B,k,D] = x[b, idx[b,j], :] with 16-byte vector loads where size and alignment allow.
cudaError_t launchGatherRows(void const* x, ElementType type, int32_t const* idx, int64_t B, int64_t T, int64_t D,
    int64_t k, void* xSel, cudaStream_t stream);

} // namespace mod_export
