#include "modCacheAppendPlugin.h"

#include "../common/modDecode.h"
#include "modCacheAppendKernel.h"

#include <memory>

using namespace nvinfer1;

namespace mod_export
{
namespace
{
constexpr int32_t kNbInputs = MoDCacheAppendPlugin::kNbInputs;
char const* const kInputNames[kNbInputs] = {"cache", "entry", "length", "rows"};
constexpr int32_t kInputRanks[kNbInputs] = {4, 4, 1, 1};

void validateIOCounts(int32_t nbInputs, int32_t nbOutputs)
{
    MOD_VALIDATE(nbInputs == kNbInputs && nbOutputs == 1,
        "expects inputs (cache, entry, length, rows) and one output, got " + std::to_string(nbInputs) + " inputs and "
            + std::to_string(nbOutputs) + " outputs");
}

void validateRanks(int32_t const* ranks)
{
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        MOD_VALIDATE(ranks[i] == kInputRanks[i],
            std::string(kInputNames[i]) + " must have rank " + std::to_string(kInputRanks[i]) + ", got "
                + std::to_string(ranks[i]));
    }
}

bool isLengthType(DataType type) noexcept
{
    return type == DataType::kINT32 || type == DataType::kINT64;
}

//! cache[B,H,S,Dh], entry[B,H,1,Dh], length[B], rows[n] with n <= B, out like cache.
void validateRuntimeShapes(PluginTensorDesc const* in, PluginTensorDesc const* out)
{
    MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
    int32_t ranks[kNbInputs];
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        ranks[i] = in[i].dims.nbDims;
    }
    validateRanks(ranks);
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
    MOD_VALIDATE(o.nbDims == 4 && o.d[0] == B && o.d[1] == H && o.d[2] == S && o.d[3] == Dh, "out must be like cache");
}
} // namespace

int32_t MoDCacheAppendPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
        validateIOCounts(nbInputs, nbOutputs);
        int32_t ranks[kNbInputs];
        for (int32_t i = 0; i < kNbInputs; ++i)
        {
            ranks[i] = in[i].desc.dims.nbDims;
        }
        validateRanks(ranks);
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDCacheAppendPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        validateIOCounts(nbInputs, nbOutputs);
        validateRuntimeShapes(in, out);
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDCacheAppendPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t MoDCacheAppendPlugin::getAliasedInput(int32_t outputIndex) noexcept
{
    return outputIndex == 0 ? 0 : -1;
}

int32_t MoDCacheAppendPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        MOD_VALIDATE(outputTypes != nullptr && inputTypes != nullptr, "no type arrays");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(isActivationType(inputTypes[0]), "cache must be float32, float16 or bfloat16");
        MOD_VALIDATE(inputTypes[1] == inputTypes[0], "entry must have cache's type");
        MOD_VALIDATE(isLengthType(inputTypes[2]), "length must be int32 or int64");
        MOD_VALIDATE(inputTypes[3] == DataType::kINT32, "rows must be int32");
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDCacheAppendPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder&) noexcept
{
    try
    {
        MOD_VALIDATE(inputs != nullptr && outputs != nullptr, "no shape arrays");
        validateIOCounts(nbInputs, nbOutputs);
        int32_t ranks[kNbInputs];
        for (int32_t i = 0; i < kNbInputs; ++i)
        {
            ranks[i] = inputs[i].nbDims;
        }
        validateRanks(ranks);
        for (int32_t a = 0; a < 4; ++a)
        {
            MOD_VALIDATE(inputs[0].d[a] != nullptr, "cache has a null dimension");
        }
        outputs[0] = inputs[0];
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

bool MoDCacheAppendPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        MOD_VALIDATE(inOut != nullptr, "no tensor descriptions");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(pos >= 0 && pos <= kNbInputs, "position " + std::to_string(pos) + " out of range");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        switch (pos)
        {
        case 0: return isActivationType(desc.type);
        case 2: return isLengthType(desc.type);
        case 3: return desc.type == DataType::kINT32;
        default: return desc.type == inOut[0].desc.type && isActivationType(desc.type); // entry, out
        }
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return false;
}

int32_t MoDCacheAppendPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    try
    {
        MOD_VALIDATE(inputDesc != nullptr && outputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "null tensor descriptions or pointers");
        validateRuntimeShapes(inputDesc, outputDesc);
        ElementType const type = toElementType(inputDesc[0].type);
        MOD_VALIDATE(isLengthType(inputDesc[2].type) && inputDesc[3].type == DataType::kINT32,
            "length must be int32/int64 and rows int32");
        Dims const& c = inputDesc[0].dims;
        int64_t const n = inputDesc[3].dims.d[0];
        bool const any = c.d[0] * c.d[1] * c.d[2] * c.d[3] > 0;
        MOD_VALIDATE(!any || (inputs[0] != nullptr && outputs[0] != nullptr), "cache or out is null");
        MOD_VALIDATE(!any || n == 0 || (inputs[1] != nullptr && inputs[2] != nullptr && inputs[3] != nullptr),
            "entry, length or rows is null");
        cudaError_t const status
            = launchCacheAppend(inputs[0], type, inputs[1], inputs[2], inputDesc[2].type == DataType::kINT64,
                static_cast<int32_t const*>(inputs[3]), n, c.d[0], c.d[1], c.d[2], c.d[3], outputs[0], stream);
        MOD_VALIDATE(status == cudaSuccess, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

MoDCacheAppendCreator::MoDCacheAppendCreator()
{
    // No attributes (the parser's plugin_version / plugin_namespace are not fields).
}

IPluginV3* MoDCacheAppendCreator::createPlugin(
    char const*, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        parseNoAttributeFields(fc, phase, MoDCacheAppendPlugin::kKind, MoDCacheAppendPlugin::kName);
        return std::make_unique<MoDCacheAppendPlugin>().release();
    }
    MOD_CATCH_AND_REPORT(MoDCacheAppendPlugin::kName, nullptr)
    return nullptr;
}

} // namespace mod_export
