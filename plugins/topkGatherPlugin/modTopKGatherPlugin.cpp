#include "modTopKGatherPlugin.h"

#include "../common/modRouting.h"
#include "modTopKGatherKernel.h"

using namespace nvinfer1;

namespace mod_export
{
namespace
{
std::string dimsText(Dims const& d)
{
    std::string text = "[";
    for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i)
    {
        text += (i > 0 ? "," : "") + std::to_string(d.d[i]);
    }
    return text + "]";
}
} // namespace

void validateTopKGatherParams(int64_t num, int64_t den)
{
    MOD_VALIDATE(den >= 1 && den <= kMaxCapacityDen,
        std::string("capacity_den must be in [1, 65536], got ") + std::to_string(den));
    MOD_VALIDATE(num >= 1 && num <= den,
        std::string("capacity_num must satisfy 0 < num <= den (den ") + std::to_string(den) + "), got "
            + std::to_string(num));
}

MoDTopKGatherPlugin::MoDTopKGatherPlugin(FieldValues const& fields)
{
    validateTopKGatherParams(fields.at(0), fields.at(1));
    mParams = TopKGatherParams{static_cast<int32_t>(fields[0]), static_cast<int32_t>(fields[1])};
}

void MoDTopKGatherPlugin::outputShapes(
    DimsExprs const* inputs, int32_t nbInputs, DimsExprs* outputs, IExprBuilder& exprBuilder) const
{
    for (int32_t i = 1; i < nbInputs; ++i)
    {
        for (int32_t a = 0; a < 2; ++a)
        {
            IDimensionExpr const* d = inputs[i].d[a];
            IDimensionExpr const* ref = inputs[0].d[a];
            MOD_VALIDATE(!(d->isConstant() && ref->isConstant()) || d->getConstantValue() == ref->getConstantValue(),
                std::string(kInputs[i].name) + " must be [B,T] like x");
        }
    }
    // k = ceil(T * num / den): a shape expression of T, so dynamic T builds and k has no TopK limit.
    IDimensionExpr const* batch = inputs[0].d[0];
    IDimensionExpr const* num = exprBuilder.constant(mParams.capacityNum);
    IDimensionExpr const* den = exprBuilder.constant(mParams.capacityDen);
    MOD_VALIDATE(num != nullptr && den != nullptr, "IExprBuilder::constant failed");
    IDimensionExpr const* scaled = exprBuilder.operation(DimensionOperation::kPROD, *inputs[0].d[1], *num);
    MOD_VALIDATE(scaled != nullptr, "IExprBuilder::operation(kPROD) failed");
    IDimensionExpr const* k = exprBuilder.operation(DimensionOperation::kCEIL_DIV, *scaled, *den);
    MOD_VALIDATE(k != nullptr, "IExprBuilder::operation(kCEIL_DIV) failed");
    outputs[0].d[0] = batch;
    outputs[0].d[1] = k;
    outputs[0].d[2] = inputs[0].d[2];
    for (int32_t i = 1; i < 3; ++i)
    {
        outputs[i].d[0] = batch;
        outputs[i].d[1] = k;
    }
}

//! Concrete shapes at run time: x[B,T,D], scores[B,T], mask[B,T]; outputs [B,k,D], [B,k], [B,k].
void MoDTopKGatherPlugin::checkShapes(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out) const
{
    Dims const& x = in[0].dims;
    MOD_VALIDATE(x.d[0] >= 0 && x.d[1] >= 0 && x.d[2] >= 0, "x must be [B,T,D], got " + dimsText(x));
    MOD_VALIDATE(x.d[1] <= INT32_MAX, "T = " + std::to_string(x.d[1]) + " does not fit the int32 idx output");
    for (int32_t i = 1; i < nbInputs; ++i)
    {
        Dims const& d = in[i].dims;
        MOD_VALIDATE(d.d[0] == x.d[0] && d.d[1] == x.d[1],
            std::string(kInputs[i].name) + " must be [B,T] = [" + std::to_string(x.d[0]) + "," + std::to_string(x.d[1])
                + "], got " + dimsText(d));
    }
    int64_t const k = capacityK(x.d[1], mParams.capacityNum, mParams.capacityDen);
    MOD_VALIDATE(out[0].dims.d[0] == x.d[0] && out[0].dims.d[1] == k && out[0].dims.d[2] == x.d[2],
        "x_sel must be [B,k,D] with k = ceil(T*num/den) = " + std::to_string(k) + ", got " + dimsText(out[0].dims));
    for (int32_t o = 1; o < 3; ++o)
    {
        MOD_VALIDATE(out[o].dims.d[0] == x.d[0] && out[o].dims.d[1] == k,
            std::string(kOutputs[o].name) + " must be [B,k] with k = " + std::to_string(k) + ", got "
                + dimsText(out[o].dims));
    }
}

cudaError_t MoDTopKGatherPlugin::launch(
    PluginTensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const
{
    bool const hasMask = nbInputs() == 3;
    ElementType const type = toElementType(inputDesc[0].type);
    MOD_VALIDATE(inputDesc[1].type == DataType::kFLOAT && (!hasMask || inputDesc[2].type == DataType::kINT32),
        "scores must be float32 and mask int32");
    int64_t const B = inputDesc[0].dims.d[0];
    int64_t const T = inputDesc[0].dims.d[1];
    int64_t const D = inputDesc[0].dims.d[2];
    int64_t const k = capacityK(T, mParams.capacityNum, mParams.capacityDen);
    if (B == 0 || k == 0)
    {
        return cudaSuccess;
    }
    MOD_VALIDATE(inputs[0] != nullptr || D == 0, "x is null");
    MOD_VALIDATE(inputs[1] != nullptr && (!hasMask || inputs[2] != nullptr), "scores or mask is null");
    MOD_VALIDATE(
        (outputs[0] != nullptr || D == 0) && outputs[1] != nullptr && outputs[2] != nullptr, "an output is null");
    int32_t const* mask = hasMask ? static_cast<int32_t const*>(inputs[2]) : nullptr;
    return launchTopKGather(inputs[0], type, static_cast<float const*>(inputs[1]), mask, B, T, D, k, outputs[0],
        static_cast<int32_t*>(outputs[1]), static_cast<float*>(outputs[2]), stream);
}

MoDTopKGatherCreator::MoDTopKGatherCreator()
{
    declareIntField("capacity_num");
    declareIntField("capacity_den");
}

} // namespace mod_export
