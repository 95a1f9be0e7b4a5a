#include "modReference.h"

#include "../common/modRouting.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace mod_export
{
namespace reference
{

void topKGather(float const* x, float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t D,
    int64_t capacityNum, int64_t capacityDen, float* xSel, int32_t* idx, float* sSel)
{
    int64_t const k = capacityK(T, capacityNum, capacityDen);
    std::vector<float> masked(static_cast<size_t>(T));
    std::vector<int64_t> order(static_cast<size_t>(T));
    for (int64_t b = 0; b < B; ++b)
    {
        for (int64_t t = 0; t < T; ++t)
        {
            float const s = scores[b * T + t];
            bool const valid = mask == nullptr || mask[b * T + t] != 0;
            masked[t] = (!valid || std::isnan(s)) ? -std::numeric_limits<float>::infinity() : s;
        }
        std::iota(order.begin(), order.end(), int64_t{0});
        // Stable: equal scores keep position order, i.e. ties go to the lower position.
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return masked[a] > masked[c]; });
        std::sort(order.begin(), order.begin() + k);
        for (int64_t j = 0; j < k; ++j)
        {
            int64_t const t = order[j];
            idx[b * k + j] = static_cast<int32_t>(t);
            sSel[b * k + j] = masked[t];
            std::memcpy(xSel + (b * k + j) * D, x + (b * T + t) * D, sizeof(float) * static_cast<size_t>(D));
        }
    }
}

void scatter(float const* x, int32_t const* idx, float const* xSel, float const* ySel, float const* sSel, int64_t B,
    int64_t T, int64_t D, int64_t k, int32_t gate, float* out)
{
    std::memcpy(out, x, sizeof(float) * static_cast<size_t>(B * T * D));
    for (int64_t b = 0; b < B; ++b)
    {
        for (int64_t j = 0; j < k; ++j)
        {
            float const s = sSel[b * k + j];
            bool const padding = s == -std::numeric_limits<float>::infinity();
            float const g = padding ? 0.0f : (gate == 1 ? 1.0f / (1.0f + std::exp(-s)) : s);
            int64_t const t = idx[b * k + j];
            for (int64_t d = 0; d < D; ++d)
            {
                float const xs = xSel[(b * k + j) * D + d];
                out[(b * T + t) * D + d] = xs + g * (ySel[(b * k + j) * D + d] - xs);
            }
        }
    }
}

} // namespace reference
} // namespace mod_export
