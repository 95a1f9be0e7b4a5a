#include "modTakeCountPlugin.h"

#include "../common/modDecode.h"
#include "modTakeCountKernel.h"

#include <memory>

using namespace nvinfer1;

namespace mod_export
{
namespace
{
void validateIOCounts(int32_t nbInputs, int32_t nbOutputs)
{
    MOD_VALIDATE(nbInputs == MoDTakeCountPlugin::kNbInputs && nbOutputs == MoDTakeCountPlugin::kNbOutputs,
        "expects one input (take) and two outputs (rows, count), got " + std::to_string(nbInputs) + " inputs and "
            + std::to_string(nbOutputs) + " outputs");
}

//! take[B] bool, rows[n] int32 with 0 <= n <= B (TensorRT may report n as -1 before it is known), count [] int32.
void validateRuntimeShapes(PluginTensorDesc const* in, PluginTensorDesc const* out)
{
    MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
    MOD_VALIDATE(in[0].dims.nbDims == 1, "take must be [B], got rank " + std::to_string(in[0].dims.nbDims));
    int64_t const B = in[0].dims.d[0];
    MOD_VALIDATE(B >= 0 && B <= kMaxDecodeBatch, "need 0 <= B <= " + std::to_string(kMaxDecodeBatch));
    MOD_VALIDATE(out[0].dims.nbDims == 1 && out[0].dims.d[0] <= B, "rows must be [n] with n <= B");
    MOD_VALIDATE(out[1].dims.nbDims == 0, "count must be a 0-D tensor");
}
} // namespace

int32_t MoDTakeCountPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(in[0].desc.dims.nbDims == 1, "take must be [B]");
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDTakeCountPlugin::onShapeChange(
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

int32_t MoDTakeCountPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t MoDTakeCountPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        MOD_VALIDATE(outputTypes != nullptr && inputTypes != nullptr, "no type arrays");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(inputTypes[0] == DataType::kBOOL, "take must be bool");
        outputTypes[0] = DataType::kINT32;
        outputTypes[1] = DataType::kINT32;
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDTakeCountPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        MOD_VALIDATE(inputs != nullptr && outputs != nullptr, "no shape arrays");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(inputs[0].nbDims == 1, "take must be [B], got rank " + std::to_string(inputs[0].nbDims));
        IDimensionExpr const* upper = inputs[0].d[0];
        MOD_VALIDATE(upper != nullptr, "take has a null dimension");
        // opt = B: the optimiser plans for every row taking (the common dense-layer case); it depends on no size
        // tensor, as declareSizeTensor requires.
        IDimensionExpr const* n = exprBuilder.declareSizeTensor(1, *upper, *upper);
        MOD_VALIDATE(n != nullptr, "declareSizeTensor failed");
        outputs[0].nbDims = 1;
        outputs[0].d[0] = n;
        outputs[1].nbDims = 0;
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

bool MoDTakeCountPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        MOD_VALIDATE(inOut != nullptr, "no tensor descriptions");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(pos >= 0 && pos < kNbInputs + kNbOutputs, "position " + std::to_string(pos) + " out of range");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        return pos == 0 ? desc.type == DataType::kBOOL : desc.type == DataType::kINT32;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return false;
}

int32_t MoDTakeCountPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    try
    {
        MOD_VALIDATE(inputDesc != nullptr && outputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "null tensor descriptions or pointers");
        validateRuntimeShapes(inputDesc, outputDesc);
        MOD_VALIDATE(inputDesc[0].type == DataType::kBOOL, "take must be bool");
        int64_t const B = inputDesc[0].dims.d[0];
        MOD_VALIDATE(outputs[1] != nullptr, "count is null");
        MOD_VALIDATE(B == 0 || (inputs[0] != nullptr && outputs[0] != nullptr), "take or rows is null");
        cudaError_t const status = launchTakeCount(static_cast<uint8_t const*>(inputs[0]), B,
            static_cast<int32_t*>(outputs[0]), static_cast<int32_t*>(outputs[1]), stream);
        MOD_VALIDATE(status == cudaSuccess, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

MoDTakeCountCreator::MoDTakeCountCreator()
{
    // No attributes (the parser's plugin_version / plugin_namespace are not fields).
}

IPluginV3* MoDTakeCountCreator::createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        parseNoAttributeFields(fc, phase, MoDTakeCountPlugin::kKind, MoDTakeCountPlugin::kName);
        return std::make_unique<MoDTakeCountPlugin>().release();
    }
    MOD_CATCH_AND_REPORT(MoDTakeCountPlugin::kName, nullptr)
    return nullptr;
}

} // namespace mod_export
