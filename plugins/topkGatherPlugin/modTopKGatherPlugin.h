// MoDTopKGather as an IPluginV3 (TensorRT 10.3 .. 11.x). Contract: docs/design.md (routing semantics, custom ONNX
// ops), and MoDTopKGather_PluginConfig.yaml next to this file (attributes, I/O names and types). The IPluginV3 glue
// is ModPluginBase's; this file holds what is MoDTopKGather's own.
#pragma once

#include "../common/modPluginBase.h"

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

class MoDTopKGatherPlugin final : public ModPluginBase<MoDTopKGatherPlugin>
{
public:
    static constexpr char const* kName = "MoDTopKGather";
    static constexpr PluginKind kKind = PluginKind::kTOPK_GATHER;
    static constexpr TensorSpec kInputs[]
        = {{"x", 3, TypeRule::kACTIVATION}, {"scores", 2, TypeRule::kFLOAT32}, {"mask", 2, TypeRule::kINT32, true}};
    static constexpr TensorSpec kOutputs[]
        = {{"x_sel", 3, TypeRule::kLIKE_FIRST}, {"idx", 2, TypeRule::kINT32}, {"s_sel", 2, TypeRule::kFLOAT32}};

    //! fields: capacity_num, capacity_den (validated).
    explicit MoDTopKGatherPlugin(FieldValues const& fields);

    //! x_sel [B,k,D], idx [B,k], s_sel [B,k] with k = ceil(T * num / den).
    void outputShapes(ShapeExprs const* inputs, int32_t nbInputs, ShapeExprs* outputs, ExprBuilder& exprBuilder) const;
    void checkShapes(TensorDesc const* in, int32_t nbInputs, TensorDesc const* out) const;
    cudaError_t launch(
        TensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const;

    TopKGatherParams const& params() const noexcept
    {
        return mParams;
    }

    std::vector<int32_t> stateValues() const
    {
        return {mParams.capacityNum, mParams.capacityDen};
    }

private:
    TopKGatherParams mParams;
};

class MoDTopKGatherCreator final : public ModPluginCreatorBase<MoDTopKGatherPlugin>
{
public:
    MoDTopKGatherCreator();
};

} // namespace mod_export
