// Host logic of the C++ generate loop (generate.cpp), without TensorRT or CUDA so that it is unit-tested on any
// machine (tests/test_generate_loop.cpp): the generation entry of manifest.json, greedy and top-k sampling, and
// the bookkeeping of the MoD-aware KV cache the loop owns (docs/generation.md).
#pragma once

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace mod_example
{

//! A manifest the loop cannot use: one line saying why.
class ManifestError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

//! What the loop needs from manifest.json's "generation" entry (written by `mod-export ... --target trt`).
struct GenerationInfo
{
    int32_t layers{0};
    std::vector<int32_t> routedLayers;
    int32_t heads{0};
    int32_t headDim{0};
    int32_t maxContext{0};
    std::string prefillEngine{"model.prefill.engine"};
    std::string decodeEngine{"model.decode.engine"};
};

//! Parse the "generation" object of a manifest.json text (a small reader for the fields above; everything else is
//! skipped). Throws ManifestError when the entry or a required field is missing or malformed.
GenerationInfo parseGenerationInfo(std::string const& manifestJson);

//! argmax over logits[0..V), ties to the lower id.
int64_t greedyToken(float const* logits, int64_t V);

//! Sample among the k most likely ids (k <= 0 or k >= V: all) at `temperature` (> 0; 0 means greedy).
int64_t topKToken(float const* logits, int64_t V, int32_t k, float temperature, std::mt19937_64& rng);

//! The cache bookkeeping of one generation: per block, per row, how many entries are valid (the device buffers'
//! past_length.l), and the fixed capacity S of the buffers [B,H,S,Dh].
class CacheBook
{
public:
    CacheBook(int32_t layers, int64_t batch, int64_t capacity);

    //! After prefill: take[b*P + p] != 0 where prompt token p of row b entered block `layer`'s cache (padding
    //! excluded by the caller). Returns, per row, the prompt positions to copy, in order, to slots 0..n-1.
    std::vector<std::vector<int64_t>> compactPrefill(int32_t layer, uint8_t const* take, int64_t P);

    //! After a decode step: rows with take[b] != 0 got one entry at their length. Throws std::length_error when a
    //! taking row's cache is full (the plugin skipped that write).
    void advance(int32_t layer, uint8_t const* take);

    int64_t length(int32_t layer, int64_t row) const;
    //! lengths of one block, as the int64 [B] the decode engine reads as past_length.l.
    std::vector<int64_t> const& lengths(int32_t layer) const;
    int64_t capacity() const noexcept
    {
        return mCapacity;
    }
    //! Device bytes of the caches: layers x 2 x B x H x S x Dh x elementBytes (+ the lengths).
    int64_t deviceBytes(int32_t heads, int32_t headDim, int32_t elementBytes) const noexcept;

private:
    int64_t mBatch;
    int64_t mCapacity;
    std::vector<std::vector<int64_t>> mLengths;
};

} // namespace mod_example
