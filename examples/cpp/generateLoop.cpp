#include "generateLoop.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>

namespace mod_example
{
namespace
{

//! Position of the value of `key` inside the object that starts at `from` (the first '{' at or after it), or npos.
size_t findKey(std::string const& text, std::string const& key, size_t from, size_t to)
{
    std::string const quoted = "\"" + key + "\"";
    size_t at = text.find(quoted, from);
    while (at != std::string::npos && at < to)
    {
        size_t colon = at + quoted.size();
        while (colon < to && std::isspace(static_cast<unsigned char>(text[colon])))
        {
            ++colon;
        }
        if (colon < to && text[colon] == ':')
        {
            ++colon;
            while (colon < to && std::isspace(static_cast<unsigned char>(text[colon])))
            {
                ++colon;
            }
            return colon;
        }
        at = text.find(quoted, at + 1);
    }
    return std::string::npos;
}

//! End (one past) of the JSON object or array starting at `open` (strings with escapes honoured).
size_t matchingEnd(std::string const& text, size_t open)
{
    int32_t depth = 0;
    bool inString = false;
    for (size_t i = open; i < text.size(); ++i)
    {
        char const c = text[i];
        if (inString)
        {
            if (c == '\\')
            {
                ++i;
            }
            else if (c == '"')
            {
                inString = false;
            }
            continue;
        }
        if (c == '"')
        {
            inString = true;
        }
        else if (c == '{' || c == '[')
        {
            ++depth;
        }
        else if (c == '}' || c == ']')
        {
            if (--depth == 0)
            {
                return i + 1;
            }
        }
    }
    throw ManifestError("manifest.json is not valid JSON (an object or array is not closed)");
}

int64_t readInteger(std::string const& text, size_t at, std::string const& key)
{
    size_t end = at;
    if (end < text.size() && text[end] == '-')
    {
        ++end;
    }
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end])))
    {
        ++end;
    }
    if (end == at || (end < text.size() && (text[end] == '.' || text[end] == 'e')))
    {
        throw ManifestError("generation." + key + " must be an integer");
    }
    return std::stoll(text.substr(at, end - at));
}

int32_t requiredInt(std::string const& text, size_t from, size_t to, std::string const& key, int64_t lo, int64_t hi)
{
    size_t const at = findKey(text, key, from, to);
    if (at == std::string::npos)
    {
        throw ManifestError("manifest.json: generation." + key + " is missing");
    }
    int64_t const value = readInteger(text, at, key);
    if (value < lo || value > hi)
    {
        throw ManifestError("generation." + key + " = " + std::to_string(value) + " is out of range");
    }
    return static_cast<int32_t>(value);
}

} // namespace

GenerationInfo parseGenerationInfo(std::string const& manifestJson)
{
    size_t const at = findKey(manifestJson, "generation", 0, manifestJson.size());
    if (at == std::string::npos || manifestJson[at] != '{')
    {
        throw ManifestError("manifest.json has no generation entry (exported with --no-decode?)");
    }
    size_t const end = matchingEnd(manifestJson, at);
    GenerationInfo info;
    info.layers = requiredInt(manifestJson, at, end, "layers", 1, 4096);
    info.heads = requiredInt(manifestJson, at, end, "heads", 1, 4096);
    info.headDim = requiredInt(manifestJson, at, end, "head_dim", 1, 65536);
    info.maxContext = requiredInt(manifestJson, at, end, "max_context", 2, 1 << 24);
    size_t const routed = findKey(manifestJson, "routed_layers", at, end);
    if (routed == std::string::npos || manifestJson[routed] != '[')
    {
        throw ManifestError("manifest.json: generation.routed_layers is missing");
    }
    size_t const routedEnd = matchingEnd(manifestJson, routed);
    for (size_t i = routed + 1; i < routedEnd - 1;)
    {
        char const c = manifestJson[i];
        if (std::isdigit(static_cast<unsigned char>(c)))
        {
            int64_t const layer = readInteger(manifestJson, i, "routed_layers");
            if (layer >= info.layers)
            {
                throw ManifestError("generation.routed_layers names block " + std::to_string(layer) + " of "
                    + std::to_string(info.layers));
            }
            info.routedLayers.push_back(static_cast<int32_t>(layer));
            while (i < routedEnd && std::isdigit(static_cast<unsigned char>(manifestJson[i])))
            {
                ++i;
            }
        }
        else if (c == ',' || std::isspace(static_cast<unsigned char>(c)))
        {
            ++i;
        }
        else
        {
            throw ManifestError("generation.routed_layers must be a list of block indices");
        }
    }
    for (auto [key, target] : {std::pair<char const*, std::string*>{"prefill_engine", &info.prefillEngine},
             std::pair<char const*, std::string*>{"decode_engine", &info.decodeEngine}})
    {
        size_t const value = findKey(manifestJson, key, at, end);
        if (value != std::string::npos)
        {
            size_t const close = manifestJson.find('"', value + 1);
            if (manifestJson[value] != '"' || close == std::string::npos)
            {
                throw ManifestError(std::string("generation.") + key + " must be a file name");
            }
            *target = manifestJson.substr(value + 1, close - value - 1);
        }
    }
    return info;
}

int64_t greedyToken(float const* logits, int64_t V)
{
    return std::max_element(logits, logits + V) - logits; // the first maximum: ties to the lower id
}

int64_t topKToken(float const* logits, int64_t V, int32_t k, float temperature, std::mt19937_64& rng)
{
    if (temperature <= 0.0f || V <= 1)
    {
        return greedyToken(logits, V);
    }
    std::vector<int64_t> ids(static_cast<size_t>(V));
    std::iota(ids.begin(), ids.end(), 0);
    int64_t const keep = (k <= 0 || k >= V) ? V : k;
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), [logits](int64_t a, int64_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    std::vector<double> weights(static_cast<size_t>(keep));
    double const top = logits[ids[0]];
    for (int64_t i = 0; i < keep; ++i)
    {
        weights[static_cast<size_t>(i)] = std::exp((logits[ids[static_cast<size_t>(i)]] - top) / temperature);
    }
    std::discrete_distribution<int64_t> pick(weights.begin(), weights.end());
    return ids[static_cast<size_t>(pick(rng))];
}

CacheBook::CacheBook(int32_t layers, int64_t batch, int64_t capacity)
    : mBatch(batch)
    , mCapacity(capacity)
    , mLengths(static_cast<size_t>(layers), std::vector<int64_t>(static_cast<size_t>(batch), 0))
{
    if (layers <= 0 || batch <= 0 || capacity <= 0)
    {
        throw std::invalid_argument("CacheBook needs layers, batch and capacity > 0");
    }
}

std::vector<std::vector<int64_t>> CacheBook::compactPrefill(int32_t layer, uint8_t const* take, int64_t P)
{
    std::vector<std::vector<int64_t>> plan(static_cast<size_t>(mBatch));
    for (int64_t b = 0; b < mBatch; ++b)
    {
        for (int64_t p = 0; p < P; ++p)
        {
            if (take[b * P + p] != 0)
            {
                plan[static_cast<size_t>(b)].push_back(p);
            }
        }
        if (static_cast<int64_t>(plan[static_cast<size_t>(b)].size()) > mCapacity)
        {
            throw std::length_error("the prompt does not fit the KV cache");
        }
        mLengths.at(static_cast<size_t>(layer))[static_cast<size_t>(b)]
            = static_cast<int64_t>(plan[static_cast<size_t>(b)].size());
    }
    return plan;
}

void CacheBook::advance(int32_t layer, uint8_t const* take)
{
    std::vector<int64_t>& lengths = mLengths.at(static_cast<size_t>(layer));
    for (int64_t b = 0; b < mBatch; ++b)
    {
        if (take[b] != 0)
        {
            if (lengths[static_cast<size_t>(b)] >= mCapacity)
            {
                throw std::length_error("the KV cache is full: ask for fewer new tokens");
            }
            ++lengths[static_cast<size_t>(b)];
        }
    }
}

int64_t CacheBook::length(int32_t layer, int64_t row) const
{
    return mLengths.at(static_cast<size_t>(layer)).at(static_cast<size_t>(row));
}

std::vector<int64_t> const& CacheBook::lengths(int32_t layer) const
{
    return mLengths.at(static_cast<size_t>(layer));
}

int64_t CacheBook::deviceBytes(int32_t heads, int32_t headDim, int32_t elementBytes) const noexcept
{
    int64_t const perBlock = 2 * mBatch * heads * mCapacity * headDim * elementBytes + 8 * mBatch;
    return static_cast<int64_t>(mLengths.size()) * perBlock;
}

} // namespace mod_example
