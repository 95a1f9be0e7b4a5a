// MoDTopKGather as an IPluginV3 (TensorRT 10.3 .. 11.x). Contract: DESIGN.md sections 2 and 3.
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

//! Parse and validate the fields (capacity_num, capacity_den). false + error on a bad collection.
bool parseTopKGatherFields(nvinfer1::PluginFieldCollection const* fc, TopKGatherParams& params, std::string& error) noexcept;

class MoDTopKGatherPlugin final : public ModPluginBase<MoDTopKGatherPlugin>
{
public:
    static constexpr char const* kName = "MoDTopKGather";

    explicit MoDTopKGatherPlugin(TopKGatherParams params);
    MoDTopKGatherPlugin(MoDTopKGatherPlugin const& other);

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    TopKGatherParams const& params() const noexcept
    {
        return mParams;
    }

private:
    void refreshSerialFields() noexcept;

    TopKGatherParams mParams;
    bool mHasMask{true};
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class MoDTopKGatherCreator final : public ModPluginCreatorBase<MoDTopKGatherPlugin>
{
public:
    MoDTopKGatherCreator();
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace mod_export
