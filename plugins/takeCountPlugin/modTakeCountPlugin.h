// MoDTakeCount as an IPluginV3 (TensorRT 10.3 .. 11.x): the rows of a decode step that take a block, as a compact
// index list whose length is a size tensor. Contract: docs/generation.md, MoDTakeCount_PluginConfig.yaml, README.md.
// The IPluginV3 glue is ModPluginBase's; this file holds what is MoDTakeCount's own.
#pragma once

#include "../common/modPluginBase.h"

namespace mod_export
{

class MoDTakeCountPlugin final : public ModPluginBase<MoDTakeCountPlugin>
{
public:
    static constexpr char const* kName = "MoDTakeCount";
    static constexpr PluginKind kKind = PluginKind::kTAKE_COUNT;
    static constexpr TensorSpec kInputs[] = {{"take", 1, TypeRule::kBOOL}};
    static constexpr TensorSpec kOutputs[] = {{"rows", 1, TypeRule::kINT32}, {"count", 0, TypeRule::kINT32}};

    //! rows [n] with n = declareSizeTensor(1, opt = B, upper = B); count [] (0-D int32, the size tensor).
    void outputShapes(ShapeExprs const* inputs, int32_t nbInputs, ShapeExprs* outputs, ExprBuilder& exprBuilder) const;
    void checkShapes(TensorDesc const* in, int32_t nbInputs, TensorDesc const* out) const;
    cudaError_t launch(
        TensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const;
};

class MoDTakeCountCreator final : public ModPluginCreatorBase<MoDTakeCountPlugin>
{
public:
    MoDTakeCountCreator();
};

} // namespace mod_export
