#include "modTopKGatherPlugin.h"

#include "../common/modRouting.h"
#include "modTopKGatherKernel.h"

#include <cstring>
#include <memory>

using namespace nvinfer1;

namespace mod_export
{
namespace
{
constexpr char const* kPlugin = MoDTopKGatherPlugin::kName;

bool validInputCount(int32_t nbInputs) noexcept
{
    return nbInputs == 2 || nbInputs == 3;
}

void validateIOCounts(int32_t nbInputs, int32_t nbOutputs)
{
    MOD_VALIDATE(validInputCount(nbInputs) && nbOutputs == 3,
        "expects inputs (x, scores[, mask]) and outputs (x_sel, idx, s_sel), got " + std::to_string(nbInputs)
            + " inputs and " + std::to_string(nbOutputs) + " outputs");
}

std::string dimsText(Dims const& d)
{
    std::string text = "[";
    for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i)
    {
        text += (i > 0 ? "," : "") + std::to_string(d.d[i]);
    }
    return text + "]";
}

//! Concrete shapes at run time: x[B,T,D], scores[B,T], mask[B,T]; outputs (if given) [B,k,D], [B,k], [B,k].
void validateRuntimeShapes(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, TopKGatherParams const& params)
{
    MOD_VALIDATE(in != nullptr, "no input descriptions");
    Dims const& x = in[0].dims;
    MOD_VALIDATE(x.nbDims == 3 && x.d[0] >= 0 && x.d[1] >= 0 && x.d[2] >= 0, "x must be [B,T,D], got " + dimsText(x));
    MOD_VALIDATE(x.d[1] <= INT32_MAX, "T = " + std::to_string(x.d[1]) + " does not fit the int32 idx output");
    for (int32_t i = 1; i < nbInputs; ++i)
    {
        Dims const& d = in[i].dims;
        MOD_VALIDATE(d.nbDims == 2 && d.d[0] == x.d[0] && d.d[1] == x.d[1],
            std::string(i == 1 ? "scores" : "mask") + " must be [B,T] = [" + std::to_string(x.d[0]) + ","
                + std::to_string(x.d[1]) + "], got " + dimsText(d));
    }
    if (out == nullptr)
    {
        return;
    }
    int64_t const k = capacityK(x.d[1], params.capacityNum, params.capacityDen);
    MOD_VALIDATE(
        out[0].dims.nbDims == 3 && out[0].dims.d[0] == x.d[0] && out[0].dims.d[1] == k && out[0].dims.d[2] == x.d[2],
        "x_sel must be [B,k,D] with k = ceil(T*num/den) = " + std::to_string(k) + ", got " + dimsText(out[0].dims));
    for (int32_t o = 1; o < 3; ++o)
    {
        MOD_VALIDATE(out[o].dims.nbDims == 2 && out[o].dims.d[0] == x.d[0] && out[o].dims.d[1] == k,
            std::string(o == 1 ? "idx" : "s_sel") + " must be [B,k] with k = " + std::to_string(k) + ", got "
                + dimsText(out[o].dims));
    }
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

TopKGatherParams parseTopKGatherFields(PluginFieldCollection const* fc, TensorRTPhase phase)
{
    PluginField const* state = findStateField(fc, phase);
    if (state != nullptr)
    {
        std::vector<int32_t> const values
            = readStateField(*state, MoDTopKGatherPlugin::kKind, MoDTopKGatherPlugin::kNbStateValues);
        validateTopKGatherParams(values[0], values[1]);
        return TopKGatherParams{values[0], values[1]};
    }
    bool haveNum = false;
    bool haveDen = false;
    int64_t num = 0;
    int64_t den = 0;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (std::strcmp(f.name, "capacity_num") == 0)
        {
            MOD_VALIDATE(!haveNum, "field capacity_num given twice");
            num = readIntegerField(f);
            haveNum = true;
        }
        else if (std::strcmp(f.name, "capacity_den") == 0)
        {
            MOD_VALIDATE(!haveDen, "field capacity_den given twice");
            den = readIntegerField(f);
            haveDen = true;
        }
        else if (std::strcmp(f.name, "plugin_version") != 0 && std::strcmp(f.name, "plugin_namespace") != 0)
        {
            logPluginMessage(ILogger::Severity::kWARNING,
                (std::string("MoDTopKGather: ignoring unknown field '") + f.name + "'").c_str());
        }
    }
    MOD_VALIDATE(haveNum && haveDen, std::string("missing field ") + (haveNum ? "capacity_den" : "capacity_num"));
    validateTopKGatherParams(num, den);
    return TopKGatherParams{static_cast<int32_t>(num), static_cast<int32_t>(den)};
}

MoDTopKGatherPlugin::MoDTopKGatherPlugin(TopKGatherParams params) : mParams(params) {}

int32_t MoDTopKGatherPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(in[0].desc.dims.nbDims == 3, "x must have rank 3, got " + std::to_string(in[0].desc.dims.nbDims));
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            MOD_VALIDATE(in[i].desc.dims.nbDims == 2, "scores and mask must have rank 2");
        }
        mHasMask = nbInputs == 3;
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDTopKGatherPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(out != nullptr, "no output descriptions");
        validateRuntimeShapes(in, nbInputs, out, mParams);
        mHasMask = nbInputs == 3; // enqueue() is not told how many inputs there are
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDTopKGatherPlugin::getNbOutputs() const noexcept
{
    return 3;
}

int32_t MoDTopKGatherPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        MOD_VALIDATE(outputTypes != nullptr && inputTypes != nullptr, "no type arrays");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(isActivationType(inputTypes[0]), "x must be float32, float16 or bfloat16");
        MOD_VALIDATE(inputTypes[1] == DataType::kFLOAT, "scores must be float32");
        MOD_VALIDATE(nbInputs == 2 || inputTypes[2] == DataType::kINT32, "mask must be int32");
        outputTypes[0] = inputTypes[0];
        outputTypes[1] = DataType::kINT32;
        outputTypes[2] = DataType::kFLOAT;
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

int32_t MoDTopKGatherPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        MOD_VALIDATE(inputs != nullptr && outputs != nullptr, "no shape arrays");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(inputs[0].nbDims == 3 && inputs[1].nbDims == 2 && (nbInputs == 2 || inputs[2].nbDims == 2),
            "expects x[B,T,D], scores[B,T] and optional mask[B,T]");
        IDimensionExpr const* batch = inputs[0].d[0];
        IDimensionExpr const* seq = inputs[0].d[1];
        MOD_VALIDATE(batch != nullptr && seq != nullptr && inputs[0].d[2] != nullptr, "x has a null dimension");
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            for (int32_t a = 0; a < 2; ++a)
            {
                IDimensionExpr const* d = inputs[i].d[a];
                IDimensionExpr const* ref = inputs[0].d[a];
                MOD_VALIDATE(d != nullptr, "scores/mask has a null dimension");
                MOD_VALIDATE(
                    !(d->isConstant() && ref->isConstant()) || d->getConstantValue() == ref->getConstantValue(),
                    std::string(i == 1 ? "scores" : "mask") + " must be [B,T] like x");
            }
        }
        // k = ceil(T * num / den): a shape expression of T, so dynamic T builds and k has no TopK limit.
        IDimensionExpr const* num = exprBuilder.constant(mParams.capacityNum);
        IDimensionExpr const* den = exprBuilder.constant(mParams.capacityDen);
        MOD_VALIDATE(num != nullptr && den != nullptr, "IExprBuilder::constant failed");
        IDimensionExpr const* scaled = exprBuilder.operation(DimensionOperation::kPROD, *seq, *num);
        MOD_VALIDATE(scaled != nullptr, "IExprBuilder::operation(kPROD) failed");
        IDimensionExpr const* k = exprBuilder.operation(DimensionOperation::kCEIL_DIV, *scaled, *den);
        MOD_VALIDATE(k != nullptr, "IExprBuilder::operation(kCEIL_DIV) failed");
        outputs[0].nbDims = 3;
        outputs[0].d[0] = batch;
        outputs[0].d[1] = k;
        outputs[0].d[2] = inputs[0].d[2];
        for (int32_t i = 1; i < 3; ++i)
        {
            outputs[i].nbDims = 2;
            outputs[i].d[0] = batch;
            outputs[i].d[1] = k;
        }
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

bool MoDTopKGatherPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        MOD_VALIDATE(inOut != nullptr, "no tensor descriptions");
        validateIOCounts(nbInputs, nbOutputs);
        MOD_VALIDATE(pos >= 0 && pos < nbInputs + nbOutputs, "position " + std::to_string(pos) + " out of range");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == 0)
        {
            return isActivationType(desc.type);
        }
        if (pos == 1)
        {
            return desc.type == DataType::kFLOAT;
        }
        if (pos < nbInputs) // mask: int32 only, as the ONNX schema says (the exporter casts it)
        {
            return desc.type == DataType::kINT32;
        }
        int32_t const out = pos - nbInputs;
        if (out == 0)
        {
            return desc.type == inOut[0].desc.type && isActivationType(desc.type);
        }
        return desc.type == (out == 1 ? DataType::kINT32 : DataType::kFLOAT);
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return false;
}

int32_t MoDTopKGatherPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    try
    {
        MOD_VALIDATE(inputDesc != nullptr && outputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "null tensor descriptions or pointers");
        int32_t const nbInputs = mHasMask ? 3 : 2;
        validateRuntimeShapes(inputDesc, nbInputs, outputDesc, mParams);
        ElementType const type = toElementType(inputDesc[0].type);
        MOD_VALIDATE(inputDesc[1].type == DataType::kFLOAT && (!mHasMask || inputDesc[2].type == DataType::kINT32),
            "scores must be float32 and mask int32");
        int64_t const B = inputDesc[0].dims.d[0];
        int64_t const T = inputDesc[0].dims.d[1];
        int64_t const D = inputDesc[0].dims.d[2];
        int64_t const k = capacityK(T, mParams.capacityNum, mParams.capacityDen);
        if (B == 0 || k == 0)
        {
            return 0;
        }
        MOD_VALIDATE(inputs[0] != nullptr || D == 0, "x is null");
        MOD_VALIDATE(inputs[1] != nullptr && (!mHasMask || inputs[2] != nullptr), "scores or mask is null");
        MOD_VALIDATE(
            (outputs[0] != nullptr || D == 0) && outputs[1] != nullptr && outputs[2] != nullptr, "an output is null");
        int32_t const* mask = mHasMask ? static_cast<int32_t const*>(inputs[2]) : nullptr;
        cudaError_t const status = launchTopKGather(inputs[0], type, static_cast<float const*>(inputs[1]), mask, B, T,
            D, k, outputs[0], static_cast<int32_t*>(outputs[1]), static_cast<float*>(outputs[2]), stream);
        MOD_VALIDATE(status == cudaSuccess, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        return 0;
    }
    MOD_CATCH_AND_REPORT(kName, errorRecorder())
    return -1;
}

MoDTopKGatherCreator::MoDTopKGatherCreator()
{
    declareIntField("capacity_num");
    declareIntField("capacity_den");
}

IPluginV3* MoDTopKGatherCreator::createPlugin(
    char const*, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        return std::make_unique<MoDTopKGatherPlugin>(parseTopKGatherFields(fc, phase)).release();
    }
    MOD_CATCH_AND_REPORT(kPlugin, nullptr)
    return nullptr;
}

} // namespace mod_export
