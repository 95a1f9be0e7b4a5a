#include "modDecodeReference.h"

namespace mod_export
{
namespace reference
{

std::vector<int32_t> takeCount(uint8_t const* take, int64_t B)
{
    std::vector<int32_t> rows;
    for (int64_t b = 0; b < B; ++b)
    {
        if (take[b])
        {
            rows.push_back(static_cast<int32_t>(b));
        }
    }
    return rows;
}

void cacheAppend(float* cache, float const* entry, int64_t const* length, int32_t const* rows, int64_t n, int64_t B,
    int64_t H, int64_t S, int64_t Dh)
{
    for (int64_t j = 0; j < n; ++j)
    {
        int64_t const r = rows[j];
        if (r < 0 || r >= B)
        {
            continue;
        }
        int64_t const at = length[r];
        if (at < 0 || at >= S)
        {
            continue;
        }
        for (int64_t h = 0; h < H; ++h)
        {
            for (int64_t d = 0; d < Dh; ++d)
            {
                cache[((r * H + h) * S + at) * Dh + d] = entry[(r * H + h) * Dh + d];
            }
        }
    }
}

} // namespace reference
} // namespace mod_export
