#include "modCacheAppendPlugin.h"

#include "../common/modDecode.h"
#include "modCacheAppendKernel.h"

using namespace nvinfer1;

namespace mod_export
{

//! cache[B,H,S,Dh], entry[B,H,1,Dh], length[B], rows[n] with n <= B, out like cache.
void MoDCacheAppendPlugin::checkShapes(PluginTensorDesc const* in, int32_t, PluginTensorDesc const* out) const
{
    Dims const& c = in[0].dims;
    int64_t const B = c.d[0];
    int64_t const H = c.d[1];
    int64_t const S = c.d[2];
    int64_t const Dh = c.d[3];
    int64_t const n = in[3].dims.d[0];
    MOD_VALIDATE(B >= 0 && H >= 0 && S >= 0 && Dh >= 0 && B <= kMaxDecodeBatch, "need B, H, S, Dh >= 0 and B <= 2^20");
    MOD_VALIDATE(n >= 0 && n <= B, "rows must be [n] with 0 <= n <= B, got n = " + std::to_string(n));
    Dims const& e = in[1].dims;
    MOD_VALIDATE(e.d[0] == B && e.d[1] == H && e.d[2] == 1 && e.d[3] == Dh, "entry must be [B,H,1,Dh] like cache");
    MOD_VALIDATE(in[2].dims.d[0] == B, "length must be [B]");
    Dims const& o = out[0].dims;
    MOD_VALIDATE(o.d[0] == B && o.d[1] == H && o.d[2] == S && o.d[3] == Dh, "out must be like cache");
}

int32_t MoDCacheAppendPlugin::getAliasedInput(int32_t outputIndex) noexcept
{
    return outputIndex == 0 ? 0 : -1;
}

cudaError_t MoDCacheAppendPlugin::launch(
    PluginTensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const
{
    ElementType const type = toElementType(inputDesc[0].type);
    MOD_VALIDATE(acceptsType(TypeRule::kINT32_OR_INT64, inputDesc[2].type, inputDesc[0].type)
            && inputDesc[3].type == DataType::kINT32,
        "length must be int32/int64 and rows int32");
    Dims const& c = inputDesc[0].dims;
    int64_t const n = inputDesc[3].dims.d[0];
    bool const any = c.d[0] * c.d[1] * c.d[2] * c.d[3] > 0;
    MOD_VALIDATE(!any || (inputs[0] != nullptr && outputs[0] != nullptr), "cache or out is null");
    MOD_VALIDATE(!any || n == 0 || (inputs[1] != nullptr && inputs[2] != nullptr && inputs[3] != nullptr),
        "entry, length or rows is null");
    return launchCacheAppend(inputs[0], type, inputs[1], inputs[2], inputDesc[2].type == DataType::kINT64,
        static_cast<int32_t const*>(inputs[3]), n, c.d[0], c.d[1], c.d[2], c.d[3], outputs[0], stream);
}

MoDCacheAppendCreator::MoDCacheAppendCreator()
{
    // No attributes (the parser's plugin_version / plugin_namespace are not fields).
}

} // namespace mod_export
