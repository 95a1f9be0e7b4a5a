/*
 * The plugins' serialized state: one byte blob (PluginFieldType::kUNKNOWN field "mod_export_state") that
 * getFieldsToSerialize() returns and the creator decodes when TensorRT deserializes an engine.
 * No TensorRT include: the encoding and every way decoding can fail are tested without headers.
 *
 * Layout, little-endian, 4-byte words:
 *   magic "MODX" | format version | plugin kind | value count n | n int32 values | FNV-1a checksum
 * The format version is checked right after the magic, before any size that a later version may change,
 * so an engine written by a different version of the library fails with that reason.
 */
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace mod_export
{

constexpr char const* kStateFieldName = "mod_export_state";
constexpr uint32_t kStateMagic = 0x58444F4Du; // bytes 'M' 'O' 'D' 'X'
constexpr uint32_t kStateFormatVersion = 1;
constexpr uint32_t kStateMaxValues = 16;
constexpr size_t kStateHeaderBytes = 16;

enum class PluginKind : uint32_t
{
    kTOPK_GATHER = 1,
    kSCATTER = 2,
    kTAKE_COUNT = 3,
    kCACHE_APPEND = 4,
};

enum class StateStatus : int32_t
{
    kOK = 0,
    kTRUNCATED,      //!< fewer bytes than the header or the values it announces
    kBAD_MAGIC,      //!< not a mod_export state at all
    kOTHER_VERSION,  //!< written by a different format version of the library
    kOTHER_PLUGIN,   //!< the state of the other plugin
    kBAD_COUNT,      //!< a value count this plugin does not have
    kTRAILING_BYTES, //!< more bytes than announced
    kBAD_CHECKSUM,   //!< corrupted
};

struct DecodedState
{
    StateStatus status{StateStatus::kTRUNCATED};
    uint32_t version{0}; //!< the format version found (valid from kOTHER_VERSION on)
    std::vector<int32_t> values;
};

namespace detail
{
inline void putWord(std::vector<uint8_t>& out, uint32_t word)
{
    for (int32_t i = 0; i < 4; ++i)
    {
        out.push_back(static_cast<uint8_t>(word >> (8 * i)));
    }
}

inline uint32_t getWord(uint8_t const* p) noexcept
{
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16)
        | (static_cast<uint32_t>(p[3]) << 24);
}

inline uint32_t fnv1a(uint8_t const* p, size_t n) noexcept
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < n; ++i)
    {
        hash = (hash ^ p[i]) * 16777619u;
    }
    return hash;
}
} // namespace detail

//! Encode the state of plugin `kind` (its integer parameters, in a fixed order).
inline std::vector<uint8_t> encodeState(PluginKind kind, std::vector<int32_t> const& values)
{
    std::vector<uint8_t> out;
    out.reserve(kStateHeaderBytes + 4 * values.size() + 4);
    detail::putWord(out, kStateMagic);
    detail::putWord(out, kStateFormatVersion);
    detail::putWord(out, static_cast<uint32_t>(kind));
    detail::putWord(out, static_cast<uint32_t>(values.size()));
    for (int32_t v : values)
    {
        detail::putWord(out, static_cast<uint32_t>(v));
    }
    detail::putWord(out, detail::fnv1a(out.data(), out.size()));
    return out;
}

//! Decode a state blob of `size` bytes that must belong to `kind` and hold `expectedValues` values.
inline DecodedState decodeState(void const* data, int64_t size, PluginKind kind, uint32_t expectedValues)
{
    DecodedState result;
    uint8_t const* p = static_cast<uint8_t const*>(data);
    if (p == nullptr || size < 4)
    {
        return result; // kTRUNCATED
    }
    if (detail::getWord(p) != kStateMagic)
    {
        result.status = StateStatus::kBAD_MAGIC;
        return result;
    }
    if (size < 8)
    {
        return result;
    }
    result.version = detail::getWord(p + 4);
    if (result.version != kStateFormatVersion)
    {
        result.status = StateStatus::kOTHER_VERSION;
        return result;
    }
    if (size < static_cast<int64_t>(kStateHeaderBytes))
    {
        result.status = StateStatus::kTRUNCATED;
        return result;
    }
    if (detail::getWord(p + 8) != static_cast<uint32_t>(kind))
    {
        result.status = StateStatus::kOTHER_PLUGIN;
        return result;
    }
    uint32_t const count = detail::getWord(p + 12);
    if (count != expectedValues || count > kStateMaxValues)
    {
        result.status = StateStatus::kBAD_COUNT;
        return result;
    }
    int64_t const total = static_cast<int64_t>(kStateHeaderBytes) + 4 * static_cast<int64_t>(count) + 4;
    if (size < total)
    {
        result.status = StateStatus::kTRUNCATED;
        return result;
    }
    if (size > total)
    {
        result.status = StateStatus::kTRAILING_BYTES;
        return result;
    }
    if (detail::getWord(p + total - 4) != detail::fnv1a(p, static_cast<size_t>(total - 4)))
    {
        result.status = StateStatus::kBAD_CHECKSUM;
        return result;
    }
    for (uint32_t i = 0; i < count; ++i)
    {
        result.values.push_back(static_cast<int32_t>(detail::getWord(p + kStateHeaderBytes + 4 * i)));
    }
    result.status = StateStatus::kOK;
    return result;
}

//! One line for a failed decode, e.g. for the creator's error.
inline std::string describeState(DecodedState const& state)
{
    switch (state.status)
    {
    case StateStatus::kOK: return "ok";
    case StateStatus::kTRUNCATED: return "serialized state is truncated";
    case StateStatus::kBAD_MAGIC: return "serialized state is not a mod_export plugin state (bad magic)";
    case StateStatus::kOTHER_VERSION:
        return "serialized state has format version " + std::to_string(state.version) + ", this library reads version "
            + std::to_string(kStateFormatVersion) + " (engine built with a different mod_export plugin library)";
    case StateStatus::kOTHER_PLUGIN: return "serialized state belongs to a different plugin";
    case StateStatus::kBAD_COUNT: return "serialized state has an unexpected number of values";
    case StateStatus::kTRAILING_BYTES: return "serialized state has trailing bytes";
    case StateStatus::kBAD_CHECKSUM: return "serialized state is corrupted (checksum mismatch)";
    }
    return "serialized state: unknown status";
}

} // namespace mod_export
