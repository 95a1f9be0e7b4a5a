#include "modScatterPlugin.h"

#include "modScatterKernel.h"

using namespace nvinfer1;

namespace mod_export
{

Gate validateGate(int64_t value)
{
    MOD_VALIDATE(value == static_cast<int64_t>(Gate::kIDENTITY) || value == static_cast<int64_t>(Gate::kSIGMOID),
        "unknown gate " + std::to_string(value) + " (0 identity, 1 sigmoid)");
    return static_cast<Gate>(value);
}

MoDScatterPlugin::MoDScatterPlugin(FieldValues const& fields) : mGate(validateGate(fields.at(0))) {}

//! Concrete shapes: x[B,T,D], idx[B,k], x_sel[B,k,D], y_sel[B,k,D], s_sel[B,k], out[B,T,D], k <= T.
void MoDScatterPlugin::checkShapes(PluginTensorDesc const* in, int32_t, PluginTensorDesc const* out) const
{
    Dims const& x = in[0].dims;
    int64_t const B = x.d[0];
    int64_t const T = x.d[1];
    int64_t const D = x.d[2];
    int64_t const k = in[1].dims.d[1];
    MOD_VALIDATE(
        B >= 0 && T >= 0 && D >= 0 && k >= 0 && k <= T && T <= INT32_MAX, "need B, T, D >= 0 and 0 <= k <= T < 2^31");
    int64_t const expected[][3] = {{B, T, D}, {B, k, 0}, {B, k, D}, {B, k, D}, {B, k, 0}};
    for (int32_t i = 1; i < countOf(kInputs); ++i)
    {
        for (int32_t a = 0; a < kInputs[i].rank; ++a)
        {
            MOD_VALIDATE(in[i].dims.d[a] == expected[i][a],
                std::string(kInputs[i].name) + " does not match x[B,T,D] and idx[B,k] (axis " + std::to_string(a)
                    + ")");
        }
    }
    MOD_VALIDATE(out[0].dims.d[0] == B && out[0].dims.d[1] == T && out[0].dims.d[2] == D, "out must be [B,T,D] like x");
}

cudaError_t MoDScatterPlugin::launch(
    PluginTensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const
{
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
    return launchScatter(inputs[0], type, static_cast<int32_t const*>(inputs[1]), inputs[2], inputs[3],
        static_cast<float const*>(inputs[4]), B, T, D, k, mGate, outputs[0], stream);
}

MoDScatterCreator::MoDScatterCreator()
{
    declareIntField("gate");
}

} // namespace mod_export
