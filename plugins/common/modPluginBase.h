// The IPluginV3 glue every mod_export plugin shares (CRTP): the capability dispatch, the core (name/version/
// namespace), clone and attachToContext with the execution context's error recorder, serialization, and the
// build/runtime skeletons driven by the plugin's I/O table (modPluginIO.h). Every noexcept entry point that does
// more than return a constant runs in `try` and ends with MOD_CATCH_AND_REPORT; the plugin's own hooks throw
// PluginError (MOD_VALIDATE) and never see a null array or a wrong I/O count.
#pragma once

#include "modPluginIO.h"

#include <memory>
#include <type_traits>
#include <vector>

namespace mod_export
{

//! Name, version and namespace of `Plugin`, for the plugin's core (IPluginV3OneCore) and its creator
//! (IPluginCreatorV3One) alike.
template <typename Interface, typename Plugin>
class ModPluginIdentity : public Interface
{
public:
    char const* getPluginName() const noexcept override
    {
        return Plugin::kName;
    }

    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }

    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }
};

//! The base of every plugin. Derived supplies only what is its own:
//!   static constexpr char const* kName; static constexpr PluginKind kKind;   its name and state tag
//!   static constexpr TensorSpec kInputs[], kOutputs[];   I/O names, ranks and type rules, from which the I/O
//!       counts, ranks, output types and supported formats (kLINEAR only) follow
//!   void checkShapes(TensorDesc const* in, int32_t nbInputs, TensorDesc const* out) const   the concrete shapes,
//!       given tensors of the tables' ranks (onShapeChange, and enqueue before launch)
//!   cudaError_t launch(TensorDesc const* inDesc, void const* const* in, void* const* out, cudaStream_t) const
//!       its kernel (the descriptions and pointer arrays are non-null and the shapes checked)
//! and, where the defaults below do not fit:
//!   void outputShapes(ShapeExprs const* in, int32_t nbInputs, ShapeExprs* out, ExprBuilder&) const   the shape
//!       rule: the outputs' dimensions (their ranks are the table's), given inputs whose count, ranks and
//!       dimensions are checked (default: every output like input 0)
//!   std::vector<int32_t> stateValues() const   its fields, serialized in the creator's declared order (default: none)
//! Build: IPluginV3OneBuild or IPluginV3OneBuildV2 (adds getAliasedInput, honoured by TensorRT 10.3 only with
//! PreviewFeature::kALIASED_PLUGIN_IO_10_03).
template <typename Derived, typename Build = nvinfer1::IPluginV3OneBuild>
class ModPluginBase : public nvinfer1::IPluginV3,
                      public ModPluginIdentity<nvinfer1::IPluginV3OneCore, Derived>,
                      public Build,
                      public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        try
        {
            switch (type)
            {
            case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
            case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<Build*>(this);
            case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
            }
            throwPluginError(
                __FILE__, __LINE__, "unknown PluginCapabilityType " + std::to_string(static_cast<int32_t>(type)));
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return std::make_unique<Derived>(derived()).release();
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return nullptr;
    }

    // IPluginV3OneBuild

    int32_t getNbOutputs() const noexcept override
    {
        try
        {
            return countOf(Derived::kOutputs);
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return -1;
    }

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        try
        {
            MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
            validateIOCounts(Derived::kInputs, Derived::kOutputs, nbInputs, nbOutputs);
            validateRanks(Derived::kInputs, in, nbInputs);
            mNbInputs = nbInputs;
            return 0;
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return -1;
    }

    //! Each input checked against its type rule, in order; each output's type follows from its rule.
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override
    {
        try
        {
            MOD_VALIDATE(outputTypes != nullptr && inputTypes != nullptr, "no type arrays");
            validateIOCounts(Derived::kInputs, Derived::kOutputs, nbInputs, nbOutputs);
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                TensorSpec const& spec = Derived::kInputs[i];
                MOD_VALIDATE(acceptsType(spec.type, inputTypes[i], inputTypes[0]),
                    std::string(spec.name) + " " + typeRequirement(spec.type, Derived::kInputs[0].name));
            }
            for (int32_t o = 0; o < nbOutputs; ++o)
            {
                outputTypes[o] = outputType(Derived::kOutputs[o].type, inputTypes[0]);
            }
            return 0;
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return -1;
    }

    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const*, int32_t,
        nvinfer1::DimsExprs* outputs, int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override
    {
        try
        {
            MOD_VALIDATE(inputs != nullptr && outputs != nullptr, "no shape arrays");
            validateIOCounts(Derived::kInputs, Derived::kOutputs, nbInputs, nbOutputs);
            validateRanks(Derived::kInputs, inputs, nbInputs);
            validateDimensions(Derived::kInputs, inputs, nbInputs);
            for (int32_t o = 0; o < nbOutputs; ++o)
            {
                outputs[o].nbDims = Derived::kOutputs[o].rank;
            }
            derived().outputShapes(inputs, nbInputs, outputs, exprBuilder);
            return 0;
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return -1;
    }

    //! kLINEAR only, and the type rule of the tensor at `pos` (inputs, then outputs).
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override
    {
        try
        {
            MOD_VALIDATE(inOut != nullptr, "no tensor descriptions");
            validateIOCounts(Derived::kInputs, Derived::kOutputs, nbInputs, nbOutputs);
            MOD_VALIDATE(pos >= 0 && pos < nbInputs + nbOutputs, "position " + std::to_string(pos) + " out of range");
            nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
            TensorSpec const& spec = pos < nbInputs ? Derived::kInputs[pos] : Derived::kOutputs[pos - nbInputs];
            return desc.format == nvinfer1::TensorFormat::kLINEAR
                && acceptsType(spec.type, desc.type, inOut[0].desc.type);
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return false;
    }

    // IPluginV3OneRuntime

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        try
        {
            validateIOCounts(Derived::kInputs, Derived::kOutputs, nbInputs, nbOutputs);
            MOD_VALIDATE(in != nullptr && out != nullptr, "no tensor descriptions");
            checkTensors(in, nbInputs, out);
            mNbInputs = nbInputs; // enqueue() is not told how many inputs there are
            return 0;
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return -1;
    }

    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept override
    {
        try
        {
            MOD_VALIDATE(inputDesc != nullptr && outputDesc != nullptr && inputs != nullptr && outputs != nullptr,
                "null tensor descriptions or pointers");
            checkTensors(inputDesc, nbInputs(), outputDesc);
            cudaError_t const status = derived().launch(inputDesc, inputs, outputs, stream);
            MOD_VALIDATE(status == cudaSuccess, std::string("kernel launch failed: ") + cudaGetErrorString(status));
            return 0;
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return -1;
    }

    //! The clone that runs in an execution context reports its errors to that context's recorder too.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override
    {
        try
        {
            MOD_VALIDATE(context != nullptr, "no resource context given");
            auto attached = std::make_unique<Derived>(derived());
            attached->mErrorRecorder.reset(context->getErrorRecorder());
            return attached.release();
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return nullptr;
    }

    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        try
        {
            mSerialState = encodeState(Derived::kKind, derived().stateValues());
            mSerialFields.clear();
            mSerialFields.emplace_back(kStateFieldName, mSerialState.data(), nvinfer1::PluginFieldType::kUNKNOWN,
                static_cast<int32_t>(mSerialState.size()));
            mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
            mSerialCollection.fields = mSerialFields.data();
            return &mSerialCollection;
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return nullptr;
    }

    // The types in the hooks' signatures.
    using TensorDesc = nvinfer1::PluginTensorDesc;
    using ShapeExprs = nvinfer1::DimsExprs;
    using ExprBuilder = nvinfer1::IExprBuilder;

    //! The recorder of the execution context this plugin was attached to; nullptr at build time.
    nvinfer1::IErrorRecorder* errorRecorder() const noexcept
    {
        return mErrorRecorder.get();
    }

    //! Default shape rule: every output has the first input's shape.
    void outputShapes(
        nvinfer1::DimsExprs const* inputs, int32_t, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder&) const
    {
        for (int32_t o = 0; o < countOf(Derived::kOutputs); ++o)
        {
            outputs[o] = inputs[0];
        }
    }

    //! A plugin without fields serializes no values.
    std::vector<int32_t> stateValues() const
    {
        return {};
    }

protected:
    ModPluginBase() = default;
    ModPluginBase(ModPluginBase const& other) : mErrorRecorder(other.mErrorRecorder), mNbInputs(other.mNbInputs)
    {
        // The serialized-field list is rebuilt on demand: it must point into *this, never into `other`.
    }
    ModPluginBase& operator=(ModPluginBase const&) = delete;

    //! How many inputs the last configurePlugin or onShapeChange call was given (an optional one may be absent);
    //! all of them before either call.
    int32_t nbInputs() const noexcept
    {
        return mNbInputs >= 0 ? mNbInputs : countOf(Derived::kInputs);
    }

private:
    //! Concrete tensors: the ranks of the tables, then the plugin's own shape rule.
    void checkTensors(TensorDesc const* in, int32_t nbInputs, TensorDesc const* out) const
    {
        validateRanks(Derived::kInputs, in, nbInputs);
        validateRanks(Derived::kOutputs, out, countOf(Derived::kOutputs));
        derived().checkShapes(in, nbInputs, out);
    }

    Derived& derived() noexcept
    {
        return static_cast<Derived&>(*this);
    }
    Derived const& derived() const noexcept
    {
        return static_cast<Derived const&>(*this);
    }

    ErrorRecorderRef mErrorRecorder;
    int32_t mNbInputs{-1};
    std::vector<uint8_t> mSerialState;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

//! The creator of `Plugin`. Derived creators declare their fields in their constructor (declareIntField, in the
//! order Plugin serializes them); Plugin is constructed from the FieldValues (a plugin without fields by default).
template <typename Plugin>
class ModPluginCreatorBase : public ModPluginIdentity<nvinfer1::IPluginCreatorV3One, Plugin>
{
public:
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldCollection;
    }

    nvinfer1::IPluginV3* createPlugin(
        char const*, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override
    {
        try
        {
            FieldValues const values = readFields(fc, phase);
            if constexpr (std::is_constructible<Plugin, FieldValues const&>::value)
            {
                return std::make_unique<Plugin>(values).release();
            }
            else
            {
                return std::make_unique<Plugin>().release();
            }
        }
        MOD_CATCH_AND_REPORT(Plugin::kName, nullptr)
        return nullptr;
    }

    //! The declared fields' values in `fc` (see readPluginFields); not yet validated by the plugin.
    FieldValues readFields(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) const
    {
        return readPluginFields(fc, phase, Plugin::kKind, mFieldCollection, Plugin::kName);
    }

protected:
    //! Declare a scalar int32 attribute; the ONNX parser copies only declared attributes.
    void declareIntField(char const* name)
    {
        mFields.emplace_back(name, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace mod_export
