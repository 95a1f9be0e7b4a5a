// MoDScatter as an IPluginV3 (TensorRT 10.3 .. 11.x). Contract: docs/design.md (routing semantics, custom ONNX ops),
// and MoDScatter_PluginConfig.yaml next to this file (attributes, I/O names and types). The IPluginV3 glue is
// ModPluginBase's; this file holds what is MoDScatter's own.
#pragma once

#include "../common/modPluginBase.h"
#include "../common/modRouting.h"

namespace mod_export
{

//! Check a gate id (0 identity, 1 sigmoid); throws PluginError otherwise.
Gate validateGate(int64_t value);

class MoDScatterPlugin final : public ModPluginBase<MoDScatterPlugin>
{
public:
    static constexpr char const* kName = "MoDScatter";
    static constexpr PluginKind kKind = PluginKind::kSCATTER;
    static constexpr TensorSpec kInputs[] = {{"x", 3, TypeRule::kACTIVATION}, {"idx", 2, TypeRule::kINT32},
        {"x_sel", 3, TypeRule::kLIKE_FIRST}, {"y_sel", 3, TypeRule::kLIKE_FIRST}, {"s_sel", 2, TypeRule::kFLOAT32}};
    static constexpr TensorSpec kOutputs[] = {{"out", 3, TypeRule::kLIKE_FIRST}};

    //! fields: gate (validated).
    explicit MoDScatterPlugin(FieldValues const& fields);

    void checkShapes(TensorDesc const* in, int32_t nbInputs, TensorDesc const* out) const;
    cudaError_t launch(
        TensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const;

    Gate gate() const noexcept
    {
        return mGate;
    }

    std::vector<int32_t> stateValues() const
    {
        return {static_cast<int32_t>(mGate)};
    }

private:
    Gate mGate;
};

class MoDScatterCreator final : public ModPluginCreatorBase<MoDScatterPlugin>
{
public:
    MoDScatterCreator();
};

} // namespace mod_export
