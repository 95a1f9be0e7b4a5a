// C++ generate loop on the two TensorRT engines of `mod-export MODEL --target trt` (docs/generation.md): reads
// DIR/manifest.json, loads DIR/libmod_export_plugins.so, owns the MoD-aware KV cache in device buffers, samples
// greedy or top-k. Batch 1, byte-level prompt (the example model). TensorRT 10.3 (JetPack 6) and 11.x.
//
//   mod_export_generate DIR "def main(" [NEW_TOKENS] [TOP_K TEMPERATURE SEED] [--cuda-graph]
//
// The decode engine's key.l/value.l outputs are bound to the same buffers as its past_key_values.l inputs:
// MoDCacheAppend writes the step's entry in place; the loop advances past_length.l (8 bytes per block per step).
// Compile-checked against both header sets; never run (no GPU where it was written).
#include "generateLoop.h"
#include "trtRuntime.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace
{
using namespace mod_example;

size_t elementBytes(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kINT64: return 8;
    case nvinfer1::DataType::kFLOAT:
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kHALF:
    case nvinfer1::DataType::kBF16: return 2;
    default: return 1; // kBOOL, kUINT8, kINT8
    }
}

int64_t volume(nvinfer1::Dims const& d)
{
    int64_t n = 1;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        n *= d.d[i];
    }
    return n;
}

nvinfer1::Dims dims(std::vector<int64_t> const& shape)
{
    nvinfer1::Dims d{};
    d.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i)
    {
        d.d[i] = shape[i];
    }
    return d;
}

//! Allocate every output of `e` that `bound` does not already hold, at the shapes its context reports, and bind all.
void bindOutputs(Engine& e, std::map<std::string, DeviceBuffer>& owned, std::map<std::string, void*>& bound)
{
    for (int32_t i = 0; i < e.engine->getNbIOTensors(); ++i)
    {
        char const* name = e.engine->getIOTensorName(i);
        if (e.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT && bound.count(name) == 0)
        {
            size_t const bytes = static_cast<size_t>(volume(e.context->getTensorShape(name)))
                * elementBytes(e.engine->getTensorDataType(name));
            owned.emplace(std::piecewise_construct, std::forward_as_tuple(name), std::forward_as_tuple(bytes));
            bound[name] = owned.at(name).ptr;
        }
    }
    for (auto const& [name, ptr] : bound)
    {
        if (!e.context->setTensorAddress(name.c_str(), ptr))
        {
            throw std::runtime_error("cannot bind " + name);
        }
    }
}

int run(int argc, char** argv)
{
    if (argc < 3)
    {
        std::fprintf(stderr, "usage: %s DIR PROMPT [NEW_TOKENS] [TOP_K TEMPERATURE SEED] [--cuda-graph]\n", argv[0]);
        return 2;
    }
    std::string const dir = argv[1];
    std::string const prompt = argv[2];
    bool const cudaGraph = std::strcmp(argv[argc - 1], "--cuda-graph") == 0;
    int const nargs = cudaGraph ? argc - 1 : argc;
    int64_t const newTokens = nargs > 3 ? std::atoll(argv[3]) : 32;
    int32_t const topK = nargs > 4 ? std::atoi(argv[4]) : 0;
    float const temperature = nargs > 5 ? static_cast<float>(std::atof(argv[5])) : 0.0f;
    std::mt19937_64 rng(nargs > 6 ? std::strtoull(argv[6], nullptr, 10) : 0);
    mod_example::GenerationInfo const info = mod_example::parseGenerationInfo(readFile(dir + "/manifest.json"));
    int64_t const P = static_cast<int64_t>(prompt.size());
    int64_t const S = P + newTokens + 1; // the cache capacity of this generation
    if (P == 0 || S > info.maxContext)
    {
        throw mod_example::ManifestError("the prompt plus new tokens must fit the export's max context");
    }

    StderrLogger logger;
    loadPluginLibrary(dir + "/libmod_export_plugins.so");
    std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    Engine prefill = loadEngine(*runtime, dir + "/" + info.prefillEngine);
    Engine decode = loadEngine(*runtime, dir + "/" + info.decodeEngine);
    cudaStream_t stream{};
    check(cudaStreamCreate(&stream), "stream");

    // ---- prefill: [1,P] byte tokens, no padding
    std::vector<int64_t> ids(prompt.begin(), prompt.end()), mask(static_cast<size_t>(P), 1), pos(static_cast<size_t>(P));
    for (int64_t p = 0; p < P; ++p)
    {
        ids[static_cast<size_t>(p)] &= 0xFF;
        pos[static_cast<size_t>(p)] = p;
    }
    std::map<std::string, DeviceBuffer> owned;
    std::map<std::string, void*> bound;
    for (auto const& [name, values] : {std::pair<char const*, std::vector<int64_t>*>{"input_ids", &ids},
             std::pair<char const*, std::vector<int64_t>*>{"attention_mask", &mask},
             std::pair<char const*, std::vector<int64_t>*>{"position_ids", &pos}})
    {
        owned.emplace(std::piecewise_construct, std::forward_as_tuple(name),
            std::forward_as_tuple(values->size() * sizeof(int64_t)));
        upload(owned.at(name).ptr, *values, stream);
        bound[name] = owned.at(name).ptr;
        if (!prefill.context->setInputShape(name, dims({1, P})))
        {
            throw std::runtime_error("prompt length is outside the prefill engine's profile");
        }
    }
    bindOutputs(prefill, owned, bound);
    if (!prefill.context->enqueueV3(stream))
    {
        throw std::runtime_error("prefill enqueueV3 failed");
    }

    // ---- the cache this loop owns: per block keys/values [1,H,S,Dh] f32, lengths [1] int64; prompt entries
    // compacted into it (each block keeps only the tokens that took it)
    int32_t const H = info.heads, Dh = info.headDim;
    size_t const rowBytes = static_cast<size_t>(Dh) * sizeof(float);
    mod_example::CacheBook book(info.layers, 1, S);
    std::vector<std::unique_ptr<DeviceBuffer>> caches, lengths;
    std::map<std::string, void*> step;
    for (int32_t l = 0; l < info.layers; ++l)
    {
        std::string const sl = std::to_string(l);
        std::vector<uint8_t> const take = download<uint8_t>(bound.at("take." + sl), static_cast<size_t>(P), stream);
        std::vector<std::vector<int64_t>> const plan = book.compactPrefill(l, take.data(), P);
        for (char const* kind : {"key", "value"})
        {
            caches.push_back(std::make_unique<DeviceBuffer>(static_cast<size_t>(H * S) * rowBytes));
            check(cudaMemsetAsync(caches.back()->ptr, 0, caches.back()->bytes, stream), "memset");
            auto* dst = static_cast<char*>(caches.back()->ptr);
            auto const* src = static_cast<char const*>(bound.at(std::string(kind) + "." + sl));
            for (size_t slot = 0; slot < plan[0].size(); ++slot) // H rows of Dh, strided by P (src) and S (dst)
            {
                check(cudaMemcpy2DAsync(dst + slot * rowBytes, static_cast<size_t>(S) * rowBytes,
                          src + static_cast<size_t>(plan[0][slot]) * rowBytes, static_cast<size_t>(P) * rowBytes,
                          rowBytes, static_cast<size_t>(H), cudaMemcpyDeviceToDevice, stream),
                    "compact");
            }
            step["past_key_values." + sl + "." + kind] = dst;
            step[std::string(kind) + "." + sl] = dst; // output bound to the input: appended in place
            decode.context->setInputShape(("past_key_values." + sl + "." + kind).c_str(), dims({1, H, S, Dh}));
        }
        lengths.push_back(std::make_unique<DeviceBuffer>(sizeof(int64_t)));
        upload(lengths.back()->ptr, book.lengths(l), stream);
        step["past_length." + sl] = lengths.back()->ptr;
        decode.context->setInputShape(("past_length." + sl).c_str(), dims({1}));
    }
    int64_t const V = prefill.context->getTensorShape("logits").d[2]; // logits [1,P,V]
    std::vector<float> logits
        = download<float>(static_cast<float const*>(bound.at("logits")) + (P - 1) * V, static_cast<size_t>(V), stream);
    std::fprintf(stderr, "cache: %lld device bytes for %d blocks\n",
        static_cast<long long>(book.deviceBytes(H, Dh, 4)), info.layers);

    // ---- decode: fixed shapes and addresses for the whole generation
    DeviceBuffer dToken(sizeof(int64_t)), dPos(sizeof(int64_t)), dActive(1);
    step["input_ids"] = dToken.ptr;
    step["position_ids"] = dPos.ptr;
    step["active"] = dActive.ptr;
    decode.context->setInputShape("input_ids", dims({1, 1}));
    decode.context->setInputShape("position_ids", dims({1, 1}));
    decode.context->setInputShape("active", dims({1}));
    std::map<std::string, DeviceBuffer> stepOwned;
    bindOutputs(decode, stepOwned, step);
    upload(dActive.ptr, std::vector<uint8_t>{1}, stream);
    cudaGraphExec_t graphExec{};
    bool captured = false;
    std::string text;
    for (int64_t t = 0; t < newTokens; ++t)
    {
        int64_t const next = topK > 0 || temperature > 0.0f
            ? mod_example::topKToken(logits.data(), V, topK, temperature, rng)
            : mod_example::greedyToken(logits.data(), V);
        text.push_back(static_cast<char>(next));
        upload(dToken.ptr, std::vector<int64_t>{next}, stream);
        upload(dPos.ptr, std::vector<int64_t>{P + t}, stream);
        if (captured)
        {
            check(cudaGraphLaunch(graphExec, stream), "graph launch");
        }
        else if (!decode.context->enqueueV3(stream))
        {
            throw std::runtime_error("decode enqueueV3 failed");
        }
        if (cudaGraph && !captured && t == 0) // after one eager step; data-dependent shapes may refuse capture
        {
            cudaGraph_t graph{};
            check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
            bool const ok = decode.context->enqueueV3(stream);
            cudaError_t const ended = cudaStreamEndCapture(stream, &graph);
            captured = ok && ended == cudaSuccess && cudaGraphInstantiate(&graphExec, graph, 0) == cudaSuccess;
            std::fprintf(stderr, "decode CUDA graph: %s\n", captured ? "captured" : "not capturable, running eagerly");
            (void) cudaGetLastError();
        }
        logits = download<float>(stepOwned.at("logits").ptr, static_cast<size_t>(V), stream);
        for (int32_t l = 0; l < info.layers; ++l)
        {
            std::vector<uint8_t> const take = download<uint8_t>(step.at("take." + std::to_string(l)), 1, stream);
            book.advance(l, take.data());
            upload(lengths[static_cast<size_t>(l)]->ptr, book.lengths(l), stream);
        }
    }
    check(cudaStreamSynchronize(stream), "synchronize");
    cudaStreamDestroy(stream);
    std::printf("%s%s\n", prompt.c_str(), text.c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    return mod_example::runMain(run, argc, argv);
}
