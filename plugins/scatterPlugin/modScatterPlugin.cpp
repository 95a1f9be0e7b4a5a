#include "modScatterPlugin.h"

#include "modScatterKernel.h"

#include <cstring>
#include <memory>

using namespace nvinfer1;

namespace mod_export
{
namespace
{
constexpr int32_t kNbInputs = MoDScatterPlugin::kNbInputs;
char const* const kInputNames[kNbInputs] = {"x", "idx", "x_sel", "y_sel", "s_sel"};
constexpr int32_t kInputRanks[kNbInputs] = {3, 2, 3, 3, 2};

void validateIOCounts(int32_t nbInputs, int32_t nbOutputs)
{
    MOD_VALIDATE(nbInputs == kNbInputs && nbOutputs == 1,
        "expects inputs (x, idx, x_sel, y_sel, s_sel) and one output, got " + std::to_string(nbInputs) + " inputs and "
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

//! Concrete shapes: x[B,T,D], idx[B,k], x_sel[B,k,D], y_sel[B,k,D], s_sel[B,k], out[B,T,D], k <= T.
void validateRuntimeShapes(PluginTensorDesc const* in, PluginTensorDesc const* out)
{
    MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
    int32_t ranks[kNbInputs];
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        ranks[i] = in[i].dims.nbDims;
    }
    validateRanks(ranks);
    Dims const& x = in[0].dims;
    int64_t const B = x.d[0];
    int64_t const T = x.d[1];
    int64_t const D = x.d[2];
    int64_t const k = in[1].dims.d[1];
    MOD_VALIDATE(
        B >= 0 && T >= 0 && D >= 0 && k >= 0 && k <= T && T <= INT32_MAX, "need B, T, D >= 0 and 0 <= k <= T < 2^31");
    int64_t const expected[kNbInputs][3] = {{B, T, D}, {B, k, 0}, {B, k, D}, {B, k, D}, {B, k, 0}};
    for (int32_t i = 1; i < kNbInputs; ++i)
    {
        for (int32_t a = 0; a < kInputRanks[i]; ++a)
        {
            MOD_VALIDATE(in[i].dims.d[a] == expected[i][a],
                std::string(kInputNames[i]) + " does not match x[B,T,D] and idx[B,k] (axis " + std::to_string(a) + ")");
        }
    }
    MOD_VALIDATE(out[0].dims.nbDims == 3 && out[0].dims.d[0] == B && out[0].dims.d[1] == T && out[0].dims.d[2] == D,
        "out must be [B,T,D] like x");
}
} // namespace

Gate validateGate(int64_t value)
{
    MOD_VALIDATE(value == static_cast<int64_t>(Gate::kIDENTITY) || value == static_cast<int64_t>(Gate::kSIGMOID),
        "unknown gate " + std::to_string(value) + " (0 identity, 1 sigmoid)");
    return static_cast<Gate>(value);
}

Gate parseScatterFields(PluginFieldCollection const* fc, TensorRTPhase phase)
{
    PluginField const* state = findStateField(fc, phase);
    if (state != nullptr)
    {
        return validateGate(readStateField(*state, MoDScatterPlugin::kKind, MoDScatterPlugin::kNbStateValues)[0]);
    }
    bool haveGate = false;
    int64_t value = 0;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (std::strcmp(f.name, "gate") == 0)
        {
            MOD_VALIDATE(!haveGate, "field gate given twice");
            value = readIntegerField(f);
            haveGate = true;
        }
        else if (std::strcmp(f.name, "plugin_version") != 0 && std::strcmp(f.name, "plugin_namespace") != 0)
        {
            logPluginMessage(ILogger::Severity::kWARNING,
                (std::string("MoDScatter: ignoring unknown field '") + f.name + "'").c_str());
        }
    }
    MOD_VALIDATE(haveGate, "missing field gate");
    return validateGate(value);
}

MoDScatterPlugin::MoDScatterPlugin(Gate gate) : mGate(validateGate(static_cast<int64_t>(gate))) {}

int32_t MoDScatterPlugin::configurePlugin(
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

int32_t MoDScatterPlugin::onShapeChange(
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

int32_t MoDScatterPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t MoDScatterPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        MOD_VALIDATE(outputTypes != nullptr && inputTypes != nullptr, "no type arrays");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(isActivationType(inputTypes[0]), "x must be float32, float16 or bfloat16");
        MOD_VALIDATE(inputTypes[1] == DataType::kINT32, "idx must be int32");
        MOD_VALIDATE(
            inputTypes[2] == inputTypes[0] && inputTypes[3] == inputTypes[0], "x_sel and y_sel must have x's type");
        MOD_VALIDATE(inputTypes[4] == DataType::kFLOAT, "s_sel must be float32");
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDScatterPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
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
        for (int32_t a = 0; a < 3; ++a)
        {
            MOD_VALIDATE(inputs[0].d[a] != nullptr, "x has a null dimension");
        }
        outputs[0] = inputs[0];
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

bool MoDScatterPlugin::supportsFormatCombination(
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
        case 1: return desc.type == DataType::kINT32;
        case 4: return desc.type == DataType::kFLOAT;
        default: return desc.type == inOut[0].desc.type && isActivationType(desc.type); // x_sel, y_sel, out
        }
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return false;
}

int32_t MoDScatterPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    try
    {
        MOD_VALIDATE(inputDesc != nullptr && outputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "null tensor descriptions or pointers");
        validateRuntimeShapes(inputDesc, outputDesc);
        ElementType const type = toElementType(inputDesc[0].type);
        MOD_VALIDATE(inputDesc[1].type == DataType::kINT32 && inputDesc[4].type == DataType::kFLOAT,
            "idx must be int32 and s_sel float32");
        int64_t const B = inputDesc[0].dims.d[0];
        int64_t const T = inputDesc[0].dims.d[1];
        int64_t const D = inputDesc[0].dims.d[2];
        int64_t const k = inputDesc[1].dims.d[1];
        bool const any = B > 0 && T > 0 && D > 0;
        MOD_VALIDATE(!any || (inputs[0] != nullptr && outputs[0] != nullptr), "x or out is null");
        MOD_VALIDATE(!any || k == 0
                || (inputs[1] != nullptr && inputs[2] != nullptr && inputs[3] != nullptr && inputs[4] != nullptr),
            "idx, x_sel, y_sel or s_sel is null");
        cudaError_t const status = launchScatter(inputs[0], type, static_cast<int32_t const*>(inputs[1]), inputs[2],
            inputs[3], static_cast<float const*>(inputs[4]), B, T, D, k, mGate, outputs[0], stream);
        MOD_VALIDATE(status == cudaSuccess, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

MoDScatterCreator::MoDScatterCreator()
{
    declareIntField("gate");
}

IPluginV3* MoDScatterCreator::createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        return std::make_unique<MoDScatterPlugin>(parseScatterFields(fc, phase)).release();
    }
    MOD_CATCH_AND_REPORT(MoDScatterPlugin::kName, nullptr)
    return nullptr;
}

} // namespace mod_export
