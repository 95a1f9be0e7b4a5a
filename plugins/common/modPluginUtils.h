/*
 * Glue helpers shared by the plugins (TensorRT 10.3 .. 11.x), in the style of the TensorRT OSS
 * plugin/common/checkMacrosPlugin.h:
 *   - MOD_VALIDATE(condition, message): the one field/shape/argument check; throws a typed PluginError.
 *   - caughtError(): what every noexcept entry point calls from its catch block. It reports through the
 *     logger TensorRT hands over (setLoggerFinder) and, at run time, the execution context's
 *     IErrorRecorder (attachToContext), so no exception ever reaches std::terminate inside TensorRT.
 *   - readPluginFields(): a creator's declared fields, from the ONNX attributes or the serialized state.
 * Only NvInferRuntime.h is included.
 */
#pragma once

#include "modKernelTypes.h"
#include "modSerialization.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace mod_export
{

constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "mod_export";

//! Upper bound on PluginFieldCollection::nbFields accepted from a caller; more is garbage, not a plugin.
constexpr int32_t kMaxPluginFields = 64;

//! A failed MOD_VALIDATE check: bad fields, bad shapes, bad arguments. Caught by every entry point.
class PluginError : public std::runtime_error
{
public:
    PluginError(char const* file, int32_t line, std::string const& message);

    char const* file() const noexcept
    {
        return mFile;
    }
    int32_t line() const noexcept
    {
        return mLine;
    }

private:
    char const* mFile;
    int32_t mLine;
};

//! Throws PluginError (out of line, so the check itself stays small). `file` must be a string literal.
[[noreturn]] void throwPluginError(char const* file, int32_t line, std::string const& message);

//! Remember the ILoggerFinder that TensorRT passes to setLoggerFinder() (nullptr forgets it).
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Log through TensorRT's logger when one is known, else to stderr.
void logPluginMessage(nvinfer1::ILogger::Severity severity, char const* message) noexcept;

//! Report an exception caught in `plugin`::`method`: logged as kERROR and, when `recorder` is given,
//! reported to it (PluginError -> kINVALID_ARGUMENT, std::bad_alloc -> kFAILED_ALLOCATION, else
//! kINTERNAL_ERROR). Never throws.
void caughtError(std::exception const& error, char const* plugin, char const* method,
    nvinfer1::IErrorRecorder* recorder = nullptr) noexcept;

//! The same for an exception that is not a std::exception (catch (...)).
void caughtUnknownError(char const* plugin, char const* method, nvinfer1::IErrorRecorder* recorder = nullptr) noexcept;

//! Checks the collection itself before any field is read: not null, 0 <= nbFields <= kMaxPluginFields,
//! fields non-null when nbFields > 0, every name non-null. A creator given garbage fails here.
void validateFieldCollection(nvinfer1::PluginFieldCollection const* fc);

//! A scalar integer field of any integer PluginFieldType (the ONNX parser may pass INT32 or INT64).
int64_t readIntegerField(nvinfer1::PluginField const& field);

//! The values of a creator's declared fields, in declared order (integers, whatever type the field came as).
using FieldValues = std::vector<int64_t>;

//! The values of the `declared` fields of `plugin` (state tag `kind`) in `fc`: at run time (and whenever `fc`
//! carries one) from the serialized state field alone; otherwise from the attributes, each given once, none
//! missing, the parser's plugin_version / plugin_namespace and unknown names skipped (unknown ones logged).
//! Validates the collection first; throws PluginError on a bad collection, field or state.
FieldValues readPluginFields(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase, PluginKind kind,
    nvinfer1::PluginFieldCollection const& declared, char const* plugin);

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

//! x's element type for the kernels; throws PluginError for types the plugins do not support.
ElementType toElementType(nvinfer1::DataType type);

//! Activation types the plugins accept for x / x_sel / y_sel / out (the ONNX schemas' "T").
inline bool isActivationType(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF || type == nvinfer1::DataType::kBF16;
}

} // namespace mod_export

//! The one validation macro of the glue (cf. PLUGIN_VALIDATE in the TensorRT OSS tree). `message` is an
//! expression convertible to std::string, evaluated only when the check fails.
#define MOD_VALIDATE(condition, message)                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        static_assert(!std::is_convertible<decltype(condition), char const*>::value,                                   \
            "MOD_VALIDATE: the condition must not be a string");                                                       \
        if (!(condition))                                                                                              \
        {                                                                                                              \
            ::mod_export::throwPluginError(__FILE__, __LINE__, (message));                                             \
        }                                                                                                              \
    } while (0)

//! The catch clauses of every noexcept entry point: `try { ... } MOD_CATCH_AND_REPORT(kName, recorder)`
//! followed by the entry point's failure value. Reports as `plugin::function: message [file:line]`.
#define MOD_CATCH_AND_REPORT(plugin, recorder)                                                                         \
    catch (std::exception const& modCaught)                                                                            \
    {                                                                                                                  \
        ::mod_export::caughtError(modCaught, plugin, __func__, recorder);                                              \
    }                                                                                                                  \
    catch (...)                                                                                                        \
    {                                                                                                                  \
        ::mod_export::caughtUnknownError(plugin, __func__, recorder);                                                  \
    }
