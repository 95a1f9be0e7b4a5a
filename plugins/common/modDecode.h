/*
 * Decode-step helpers shared by the CUDA kernels of MoDTakeCount / MoDCacheAppend, the host reference and the host
 * tests (docs/generation.md). No TensorRT, no CUDA include: the index logic is written once, as MOD_HD functions.
 *
 * MoDTakeCount: take[B] (bool) -> rows[n] int32, the rows whose flag is set in ascending order, and n.
 * MoDCacheAppend: cache[B,H,S,Dh] gets entry[r,:,0,:] at cache[r,:,length[r],:] for every r in rows; a row out of
 * [0,B) or a length out of [0,S) writes nothing (the runtime sizes S for prompt + new tokens and checks it).
 */
#pragma once

#include "modRouting.h" // MOD_HD

#include <cstdint>

namespace mod_export
{

//! Largest batch a decode step may have (one warp-ballot pass per 32 rows in the count kernel).
constexpr int64_t kMaxDecodeBatch = 1 << 20;

//! Rows with take[b] != 0, ascending, into rows[]; returns their count. Serial: the reference order the
//! warp-ballot kernel reproduces (bit i of a 32-row ballot = row base + i, written at base count + popc below i).
MOD_HD int32_t compactTakingRows(uint8_t const* take, int64_t B, int32_t* rows)
{
    int32_t n = 0;
    for (int64_t b = 0; b < B; ++b)
    {
        if (take[b] != 0)
        {
            rows[n++] = static_cast<int32_t>(b);
        }
    }
    return n;
}

//! Where row r's new entry goes in a [B,H,S,Dh] cache for head h: the element offset of (r, h, length, 0), or -1
//! when the write must be skipped (row or length out of range).
MOD_HD int64_t appendOffset(int64_t r, int64_t h, int64_t length, int64_t B, int64_t H, int64_t S, int64_t Dh)
{
    if (r < 0 || r >= B || length < 0 || length >= S || h < 0 || h >= H)
    {
        return -1;
    }
    return ((r * H + h) * S + length) * Dh;
}

//! Element offset of entry (r, h, 0, 0) in a [B,H,1,Dh] tensor.
MOD_HD int64_t entryOffset(int64_t r, int64_t h, int64_t H, int64_t Dh)
{
    return (r * H + h) * Dh;
}

//! Bytes a MoDCacheAppend call moves: n rows x H heads x Dh elements read from entry and written into the cache
//! (+ the row list and lengths); plus a full cache copy when the output does not alias the input.
inline int64_t cacheAppendBytes(
    int64_t B, int64_t H, int64_t S, int64_t Dh, int64_t n, int64_t elementBytes, bool aliased)
{
    int64_t const moved = 2 * n * H * Dh * elementBytes + n * (4 + 8);
    return aliased ? moved : moved + 2 * B * H * S * Dh * elementBytes;
}

} // namespace mod_export
