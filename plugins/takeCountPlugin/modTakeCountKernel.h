// Host launcher of the MoDTakeCount kernel: the one boundary between the plugin glue and CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mod_export
{

//! take[B] (bool bytes) -> rows[0..n) int32 ascending (the rows whose flag is set), *count = n (int32, device).
//! rows must hold B entries (the upper bound); entries from n on are left untouched. B = 0 writes count = 0 only.
cudaError_t launchTakeCount(uint8_t const* take, int64_t B, int32_t* rows, int32_t* count, cudaStream_t stream);

} // namespace mod_export
