// MoDTopKGather as an IPluginV3 (TensorRT 10.3 .. 11.x). Contract: docs/design.md (routing semantics, custom ONNX ops), and
// MoDTopKGather_PluginConfig.yaml next to this file (attributes, I/O names and types).
#pragma once

#include "../common/modPluginBase.h"

#include <string>
#include <vector>

namespace mod_export
{

struct TopKGatherParams
{
    int32_t capacityNum{1};
    int32_t capacityDen{8};
};

constexpr int32_t kMaxCapacityDen = 1 << 16; // keeps T * num inside int64 for any T < 2^31

//! Check a capacity: 0 < num <= den <= 65536. Throws PluginError naming the bad field.
void validateTopKGatherParams(int64_t num, int64_t den);

//! Parse and validate the fields: the ONNX attributes (capacity_num, capacity_den) at build time, or the
//! serialized state at run time. Throws PluginError on anything else.
TopKGatherParams parseTopKGatherFields(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase);

class MoDTopKGatherPlugin final : public ModPluginBase<MoDTopKGatherPlugin>
{
public:
    static constexpr char const* kName = "MoDTopKGather";
    static constexpr PluginKind kKind = PluginKind::kTOPK_GATHER;
    static constexpr uint32_t kNbStateValues = 2;

    explicit MoDTopKGatherPlugin(TopKGatherParams params);
    MoDTopKGatherPlugin(MoDTopKGatherPlugin const& other) = default;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    TopKGatherParams const& params() const noexcept
    {
        return mParams;
    }

    //! The serialized values, in order (ModPluginBase::getFieldsToSerialize).
    std::vector<int32_t> stateValues() const
    {
        return {mParams.capacityNum, mParams.capacityDen};
    }

private:
    TopKGatherParams mParams;
    bool mHasMask{true};
};

class MoDTopKGatherCreator final : public ModPluginCreatorBase<MoDTopKGatherPlugin>
{
public:
    MoDTopKGatherCreator();
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace mod_export
