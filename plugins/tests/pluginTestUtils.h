// Test doubles and helpers shared by the plugin host tests (built only where TensorRT headers are given):
// an IExprBuilder that evaluates the expressions it builds, a logger that records what the plugins
// report, an error recorder and a resource context, and small constructors for fields and descriptors.
#pragma once

#include "common/modRouting.h"
#include "scatterPlugin/modScatterPlugin.h"
#include "topkGatherPlugin/modTopKGatherPlugin.h"

#include <NvInferImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder);

namespace mod_test
{

//! A dimension expression that can be evaluated for concrete (batch, seq).
class FakeDimExpr final : public nvinfer1::IDimensionExpr, public nvinfer1::apiv::VDimensionExpr
{
public:
    using Eval = std::function<int64_t(int64_t, int64_t)>;
    FakeDimExpr(Eval eval, bool constant, int64_t value, bool sizeTensor = false)
        : mEval(std::move(eval)), mConstant(constant), mValue(value), mSizeTensor(sizeTensor)
    {
        mImpl = this;
    }
    bool isConstant() const override
    {
        return mConstant;
    }
    int64_t getConstantValue() const override
    {
        return mValue;
    }
    bool isSizeTensor() const override
    {
        return mSizeTensor;
    }
    int64_t eval(int64_t batch, int64_t seq) const
    {
        return mEval(batch, seq);
    }

private:
    Eval mEval;
    bool mConstant;
    int64_t mValue;
    bool mSizeTensor;
};

//! Records expressions and evaluates them; implements every DimensionOperation TensorRT defines.
//! With failAfter >= 0, every call after that many returns nullptr (an out-of-memory builder).
class FakeExprBuilder final : public nvinfer1::IExprBuilder, public nvinfer1::apiv::VExprBuilder
{
public:
    explicit FakeExprBuilder(int32_t failAfter = -1) : mFailAfter(failAfter)
    {
        mImpl = this;
    }
    nvinfer1::IDimensionExpr const* constant(int64_t value) override
    {
        return make([value](int64_t, int64_t) { return value; }, true, value);
    }
    nvinfer1::IDimensionExpr const* symbol(bool isBatch)
    {
        return make([isBatch](int64_t b, int64_t s) { return isBatch ? b : s; }, false, 0);
    }
    nvinfer1::IDimensionExpr const* operation(
        nvinfer1::DimensionOperation op, nvinfer1::IDimensionExpr const& a, nvinfer1::IDimensionExpr const& b) override
    {
        using nvinfer1::DimensionOperation;
        auto const& fa = static_cast<FakeDimExpr const&>(a);
        auto const& fb = static_cast<FakeDimExpr const&>(b);
        auto eval = [op, &fa, &fb](int64_t batch, int64_t seq) -> int64_t {
            int64_t const x = fa.eval(batch, seq);
            int64_t const y = fb.eval(batch, seq);
            switch (op)
            {
            case DimensionOperation::kSUM: return x + y;
            case DimensionOperation::kPROD: return x * y;
            case DimensionOperation::kMAX: return x > y ? x : y;
            case DimensionOperation::kMIN: return x < y ? x : y;
            case DimensionOperation::kSUB: return x - y;
            case DimensionOperation::kEQUAL: return x == y;
            case DimensionOperation::kLESS: return x < y;
            case DimensionOperation::kFLOOR_DIV: return x / y;
            case DimensionOperation::kCEIL_DIV: return (x + y - 1) / y;
            }
            return -1;
        };
        bool const both = fa.isConstant() && fb.isConstant();
        return make(eval, both, both ? eval(0, 0) : 0);
    }
    //! Size tensors are refused unless a test allows them (MoDTopKGather's k is a shape expression of T, never
    //! one); an allowed one evaluates to its upper bound and records (output index, opt, upper).
    nvinfer1::IDimensionExpr const* declareSizeTensor(
        int32_t outputIndex, nvinfer1::IDimensionExpr const& opt, nvinfer1::IDimensionExpr const& upper) override
    {
        if (!allowSizeTensors)
        {
            ADD_FAILURE() << "k is a shape expression of T, never a size tensor";
            return nullptr;
        }
        sizeTensorOutput = outputIndex;
        sizeTensorOpt = &opt;
        sizeTensorUpper = &upper;
        auto const& fu = static_cast<FakeDimExpr const&>(upper);
        mExprs.push_back(
            std::make_unique<FakeDimExpr>([&fu](int64_t b, int64_t s) { return fu.eval(b, s); }, false, 0, true));
        return mExprs.back().get();
    }
    bool allowSizeTensors{false};
    int32_t sizeTensorOutput{-1};
    nvinfer1::IDimensionExpr const* sizeTensorOpt{nullptr};
    nvinfer1::IDimensionExpr const* sizeTensorUpper{nullptr};

private:
    nvinfer1::IDimensionExpr const* make(FakeDimExpr::Eval eval, bool constant, int64_t value)
    {
        if (mFailAfter >= 0 && mCalls++ >= mFailAfter)
        {
            return nullptr;
        }
        mExprs.push_back(std::make_unique<FakeDimExpr>(std::move(eval), constant, value));
        return mExprs.back().get();
    }
    std::deque<std::unique_ptr<FakeDimExpr>> mExprs;
    int32_t mFailAfter;
    int32_t mCalls{0};
};

//! Shape expressions with the given dimensions (symbols from FakeExprBuilder::symbol, or constants).
inline nvinfer1::DimsExprs dimsOf(std::initializer_list<nvinfer1::IDimensionExpr const*> dims)
{
    nvinfer1::DimsExprs d{};
    d.nbDims = static_cast<int32_t>(dims.size());
    std::copy(dims.begin(), dims.end(), d.d);
    return d;
}

//! Records every message the plugins log; installed through the library's setLoggerFinder().
class CapturingLogger final : public nvinfer1::ILogger, public nvinfer1::ILoggerFinder
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        std::lock_guard<std::mutex> lock(mMutex);
        mMessages.emplace_back(severity, msg != nullptr ? msg : "");
    }
    nvinfer1::ILogger* findLogger() override
    {
        return this;
    }
    void clear()
    {
        std::lock_guard<std::mutex> lock(mMutex);
        mMessages.clear();
    }
    //! Errors logged since the last clear(), one per line.
    std::string errors() const
    {
        std::lock_guard<std::mutex> lock(mMutex);
        std::string out;
        for (auto const& m : mMessages)
        {
            if (m.first == Severity::kERROR || m.first == Severity::kINTERNAL_ERROR)
            {
                out += m.second + "\n";
            }
        }
        return out;
    }
    int32_t errorCount() const
    {
        std::string const e = errors();
        return static_cast<int32_t>(std::count(e.begin(), e.end(), '\n'));
    }

private:
    mutable std::mutex mMutex;
    std::vector<std::pair<Severity, std::string>> mMessages;
};

//! The process-wide capturing logger, installed with the library's setLoggerFinder() on first use and
//! cleared on every call (the library keeps a raw pointer, so it lives until exit).
inline CapturingLogger& testLogger()
{
    static CapturingLogger logger;
    static bool const installed = (setLoggerFinder(&logger), true);
    (void) installed;
    logger.clear();
    return logger;
}

class FakeErrorRecorder final : public nvinfer1::IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override
    {
        return static_cast<int32_t>(mErrors.size());
    }
    nvinfer1::ErrorCode getErrorCode(int32_t i) const noexcept override
    {
        return mErrors.at(static_cast<size_t>(i)).first;
    }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override
    {
        return mErrors.at(static_cast<size_t>(i)).second.c_str();
    }
    bool hasOverflowed() const noexcept override
    {
        return false;
    }
    void clear() noexcept override
    {
        mErrors.clear();
    }
    bool reportError(nvinfer1::ErrorCode code, ErrorDesc desc) noexcept override
    {
        mErrors.emplace_back(code, desc != nullptr ? desc : "");
        return true;
    }
    RefCount incRefCount() noexcept override
    {
        return ++mRefs;
    }
    RefCount decRefCount() noexcept override
    {
        return --mRefs;
    }
    RefCount refs() const noexcept
    {
        return mRefs;
    }

private:
    std::vector<std::pair<nvinfer1::ErrorCode, std::string>> mErrors;
    RefCount mRefs{0};
};

class FakeResourceContext final : public nvinfer1::IPluginResourceContext
{
public:
    explicit FakeResourceContext(nvinfer1::IErrorRecorder* recorder) : mRecorder(recorder) {}
    nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return mRecorder;
    }

private:
    nvinfer1::IErrorRecorder* mRecorder;
};

inline nvinfer1::PluginFieldCollection fields(std::vector<nvinfer1::PluginField>& storage)
{
    nvinfer1::PluginFieldCollection fc;
    fc.nbFields = static_cast<int32_t>(storage.size());
    fc.fields = storage.data();
    return fc;
}

template <typename Creator>
Creator* findCreator(char const* name)
{
    int32_t n = 0;
    nvinfer1::IPluginCreatorInterface* const* creators = getCreators(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = dynamic_cast<Creator*>(creators[i]);
        if (c != nullptr && std::string(c->getPluginName()) == name)
        {
            return c;
        }
    }
    return nullptr;
}

inline mod_export::MoDTopKGatherCreator& topKCreator()
{
    return *findCreator<mod_export::MoDTopKGatherCreator>("MoDTopKGather");
}

inline mod_export::MoDScatterCreator& scatterCreator()
{
    return *findCreator<mod_export::MoDScatterCreator>("MoDScatter");
}

//! The fields the creator reads, validated by the plugin's constructor as createPlugin does (throws PluginError).
inline mod_export::TopKGatherParams parseTopKGatherFields(
    nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase)
{
    return mod_export::MoDTopKGatherPlugin(topKCreator().readFields(fc, phase)).params();
}

inline mod_export::Gate parseScatterFields(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase)
{
    return mod_export::MoDScatterPlugin(scatterCreator().readFields(fc, phase)).gate();
}

//! MoDTopKGather's attributes pointing at `num` and `den` (int32_t or int64_t, as `type` says; they must outlive
//! the fields).
template <typename Int>
std::vector<nvinfer1::PluginField> capacityFields(
    Int& num, Int& den, nvinfer1::PluginFieldType type = nvinfer1::PluginFieldType::kINT32)
{
    return {{"capacity_num", &num, type, 1}, {"capacity_den", &den, type, 1}};
}

inline std::unique_ptr<nvinfer1::IPluginV3> makeTopK(int32_t num, int32_t den)
{
    std::vector<nvinfer1::PluginField> storage = capacityFields(num, den);
    nvinfer1::PluginFieldCollection fc = fields(storage);
    return std::unique_ptr<nvinfer1::IPluginV3>(topKCreator().createPlugin("t", &fc, nvinfer1::TensorRTPhase::kBUILD));
}

inline std::unique_ptr<nvinfer1::IPluginV3> makeScatter(int32_t gate)
{
    std::vector<nvinfer1::PluginField> storage = {{"gate", &gate, nvinfer1::PluginFieldType::kINT32, 1}};
    nvinfer1::PluginFieldCollection fc = fields(storage);
    return std::unique_ptr<nvinfer1::IPluginV3>(
        scatterCreator().createPlugin("s", &fc, nvinfer1::TensorRTPhase::kBUILD));
}

inline nvinfer1::IPluginV3OneBuild* buildOf(nvinfer1::IPluginV3& plugin)
{
    return static_cast<nvinfer1::IPluginV3OneBuild*>(
        plugin.getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
}

inline nvinfer1::IPluginV3OneRuntime* runtimeOf(nvinfer1::IPluginV3& plugin)
{
    return static_cast<nvinfer1::IPluginV3OneRuntime*>(
        plugin.getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
}

inline nvinfer1::DynamicPluginTensorDesc desc(
    nvinfer1::DataType type, nvinfer1::TensorFormat format = nvinfer1::TensorFormat::kLINEAR)
{
    nvinfer1::DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = format;
    return d;
}

inline nvinfer1::PluginTensorDesc tensor(nvinfer1::DataType type, std::vector<int64_t> const& dims)
{
    nvinfer1::PluginTensorDesc d{};
    d.type = type;
    d.format = nvinfer1::TensorFormat::kLINEAR;
    d.dims.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
    {
        d.dims.d[i] = dims[i];
    }
    return d;
}

//! Every DataType value both header sets define (10.3 stops at kINT4; 11.x adds kFP4, kE8M0).
inline std::vector<nvinfer1::DataType> allDataTypes()
{
    std::vector<nvinfer1::DataType> types;
    for (int32_t i = 0; i < nvinfer1::EnumMax<nvinfer1::DataType>(); ++i)
    {
        types.push_back(static_cast<nvinfer1::DataType>(i));
    }
    return types;
}

} // namespace mod_test
