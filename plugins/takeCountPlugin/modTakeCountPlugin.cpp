#include "modTakeCountPlugin.h"

#include "../common/modDecode.h"
#include "modTakeCountKernel.h"

using namespace nvinfer1;

namespace mod_export
{

//! take[B] bool, rows[n] int32 with 0 <= n <= B (TensorRT may report n as -1 before it is known), count [] int32.
void MoDTakeCountPlugin::checkShapes(PluginTensorDesc const* in, int32_t, PluginTensorDesc const* out) const
{
    int64_t const B = in[0].dims.d[0];
    MOD_VALIDATE(B >= 0 && B <= kMaxDecodeBatch, "need 0 <= B <= " + std::to_string(kMaxDecodeBatch));
    MOD_VALIDATE(out[0].dims.d[0] <= B, "rows must be [n] with n <= B");
}

void MoDTakeCountPlugin::outputShapes(
    DimsExprs const* inputs, int32_t, DimsExprs* outputs, IExprBuilder& exprBuilder) const
{
    // opt = B: the optimiser plans for every row taking (the common dense-layer case); it depends on no size
    // tensor, as declareSizeTensor requires.
    IDimensionExpr const* upper = inputs[0].d[0];
    IDimensionExpr const* n = exprBuilder.declareSizeTensor(1, *upper, *upper);
    MOD_VALIDATE(n != nullptr, "declareSizeTensor failed");
    outputs[0].d[0] = n; // rows [n]; count [] is 0-D
}

cudaError_t MoDTakeCountPlugin::launch(
    PluginTensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const
{
    MOD_VALIDATE(inputDesc[0].type == DataType::kBOOL, "take must be bool");
    int64_t const B = inputDesc[0].dims.d[0];
    MOD_VALIDATE(outputs[1] != nullptr, "count is null");
    MOD_VALIDATE(B == 0 || (inputs[0] != nullptr && outputs[0] != nullptr), "take or rows is null");
    return launchTakeCount(static_cast<uint8_t const*>(inputs[0]), B, static_cast<int32_t*>(outputs[0]),
        static_cast<int32_t*>(outputs[1]), stream);
}

MoDTakeCountCreator::MoDTakeCountCreator()
{
    // No attributes (the parser's plugin_version / plugin_namespace are not fields).
}

} // namespace mod_export
