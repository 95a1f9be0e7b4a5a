// What the IPluginV3 plugins share: the capability dispatch, the core (name/version/namespace), clone and
// attachToContext, the error recorder of the execution context, and the creator's field list. Every
// noexcept entry point that does more than return a constant catches everything and reports it.
#pragma once

#include "modPluginUtils.h"
#include "modSerialization.h"

#include <cstring>
#include <memory>
#include <vector>

namespace mod_export
{

//! A counted reference to an IErrorRecorder (incRefCount on acquire/copy, decRefCount on release).
class ErrorRecorderRef
{
public:
    ErrorRecorderRef() = default;
    ErrorRecorderRef(ErrorRecorderRef const& other) noexcept
    {
        reset(other.mRecorder);
    }
    ErrorRecorderRef& operator=(ErrorRecorderRef const& other) noexcept
    {
        if (this != &other)
        {
            reset(other.mRecorder);
        }
        return *this;
    }
    ~ErrorRecorderRef()
    {
        reset(nullptr);
    }
    void reset(nvinfer1::IErrorRecorder* recorder) noexcept
    {
        if (recorder != nullptr)
        {
            recorder->incRefCount();
        }
        if (mRecorder != nullptr)
        {
            mRecorder->decRefCount();
        }
        mRecorder = recorder;
    }
    nvinfer1::IErrorRecorder* get() const noexcept
    {
        return mRecorder;
    }

private:
    nvinfer1::IErrorRecorder* mRecorder{nullptr};
};

//! Build: the build capability the plugin implements, IPluginV3OneBuild or IPluginV3OneBuildV2 (which adds
//! getAliasedInput, honoured by TensorRT 10.3 only with PreviewFeature::kALIASED_PLUGIN_IO_10_03).
template <typename Derived, typename Build = nvinfer1::IPluginV3OneBuild>
class ModPluginBase : public nvinfer1::IPluginV3,
                      public nvinfer1::IPluginV3OneCore,
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
            return std::make_unique<Derived>(static_cast<Derived const&>(*this)).release();
        }
        MOD_CATCH_AND_REPORT(Derived::kName, errorRecorder())
        return nullptr;
    }

    char const* getPluginName() const noexcept override
    {
        return Derived::kName;
    }

    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }

    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

    //! The clone that runs in an execution context reports its errors to that context's recorder too.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override
    {
        try
        {
            MOD_VALIDATE(context != nullptr, "no resource context given");
            auto attached = std::make_unique<Derived>(static_cast<Derived const&>(*this));
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
            mSerialState = encodeState(Derived::kKind, static_cast<Derived const&>(*this).stateValues());
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

    //! The recorder of the execution context this plugin was attached to; nullptr at build time.
    nvinfer1::IErrorRecorder* errorRecorder() const noexcept
    {
        return mErrorRecorder.get();
    }

protected:
    ModPluginBase() = default;
    ModPluginBase(ModPluginBase const& other) : mErrorRecorder(other.mErrorRecorder)
    {
        // The serialized-field list is rebuilt on demand: it must point into *this, never into `other`.
    }
    ModPluginBase& operator=(ModPluginBase const&) = delete;

private:
    ErrorRecorderRef mErrorRecorder;
    std::vector<uint8_t> mSerialState;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

//! The creator side shared by both plugins: name/version/namespace and the field list.
template <typename Plugin>
class ModPluginCreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldCollection;
    }

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

//! Where a creator's fields come from: the ONNX node's attributes (build) or a serialized state (runtime).
//! Returns the state field when the collection carries one, else nullptr; validates the collection first.
inline nvinfer1::PluginField const* findStateField(
    nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase)
{
    validateFieldCollection(fc);
    nvinfer1::PluginField const* state = nullptr;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, kStateFieldName) == 0)
        {
            MOD_VALIDATE(state == nullptr, std::string("field ") + kStateFieldName + " given twice");
            state = &fc->fields[i];
        }
    }
    MOD_VALIDATE(state == nullptr || fc->nbFields == 1, "a serialized state cannot be mixed with attribute fields");
    MOD_VALIDATE(state != nullptr || phase != nvinfer1::TensorRTPhase::kRUNTIME,
        std::string("deserializing, but no field ") + kStateFieldName
            + " (engine built with a different mod_export plugin library?)");
    return state;
}

//! Decode the state field of plugin `kind`; throws PluginError with the reason when it is unusable.
inline std::vector<int32_t> readStateField(nvinfer1::PluginField const& field, PluginKind kind, uint32_t nbValues)
{
    MOD_VALIDATE(field.type == nvinfer1::PluginFieldType::kUNKNOWN || field.type == nvinfer1::PluginFieldType::kINT8,
        std::string("field ") + kStateFieldName + " must be raw bytes (kUNKNOWN)");
    DecodedState const state = decodeState(field.data, field.length, kind, nbValues);
    MOD_VALIDATE(state.status == StateStatus::kOK, describeState(state));
    return state.values;
}

//! The fields of a plugin without attributes (MoDTakeCount, MoDCacheAppend): at build time only the parser's
//! plugin_version / plugin_namespace (anything else is logged and ignored); at run time a state of `kind` with no
//! values. Throws PluginError on a bad collection or state.
inline void parseNoAttributeFields(
    nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase, PluginKind kind, char const* plugin)
{
    nvinfer1::PluginField const* state = findStateField(fc, phase);
    if (state != nullptr)
    {
        readStateField(*state, kind, 0);
        return;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        char const* name = fc->fields[i].name;
        if (std::strcmp(name, "plugin_version") != 0 && std::strcmp(name, "plugin_namespace") != 0)
        {
            logPluginMessage(nvinfer1::ILogger::Severity::kWARNING,
                (std::string(plugin) + ": ignoring unknown field '" + name + "'").c_str());
        }
    }
}

} // namespace mod_export
