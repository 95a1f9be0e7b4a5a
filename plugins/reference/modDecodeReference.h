/*
 * Host C++ reference of the decode-step ops (docs/generation.md), written without the shared MOD_HD helpers: the
 * plain loops the kernels and the ONNX reference functions are checked against. float32 caches.
 */
#pragma once

#include <cstdint>
#include <vector>

namespace mod_export
{
namespace reference
{

//! take[B] (0/1) -> the taking rows, ascending (their count is the vector's size).
std::vector<int32_t> takeCount(uint8_t const* take, int64_t B);

//! cache[B,H,S,Dh] in place: cache[r,h,length[r],:] = entry[r,h,0,:] for r in rows[0..n), skipping a row out of
//! [0,B) or a length out of [0,S).
void cacheAppend(float* cache, float const* entry, int64_t const* length, int32_t const* rows, int64_t n, int64_t B,
    int64_t H, int64_t S, int64_t Dh);

} // namespace reference
} // namespace mod_export
