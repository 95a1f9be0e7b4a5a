// Embedding example: load the mod-export plugin library and a TensorRT engine, run one batch of token ids,
// print the most likely next token. Works with TensorRT 10.3 (JetPack 6) and 11.x.
//
//   mod_export_infer DIR/model.engine DIR/libmod_export_plugins.so "def main("
//
// The example model is byte-level: token ids are the bytes of the prompt.
#include "trtRuntime.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace
{
using namespace mod_example;

int run(int argc, char** argv)
{
    if (argc != 4)
    {
        std::fprintf(stderr, "usage: %s MODEL.engine libmod_export_plugins.so PROMPT\n", argv[0]);
        return 2;
    }
    StderrLogger logger;
    loadPluginLibrary(argv[2]);
    std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    Engine e = loadEngine(*runtime, argv[1]);

    std::string const prompt = argv[3];
    int64_t const T = static_cast<int64_t>(prompt.size());
    std::vector<int64_t> ids(prompt.begin(), prompt.end()); // [1, T] byte tokens
    for (auto& id : ids)
    {
        id &= 0xFF;
    }
    std::vector<int64_t> mask(ids.size(), 1); // [1, T] no padding
    nvinfer1::Dims shape{};
    shape.nbDims = 2;
    shape.d[0] = 1;
    shape.d[1] = T;
    if (!e.context->setInputShape("input_ids", shape) || !e.context->setInputShape("attention_mask", shape))
    {
        throw std::runtime_error("sequence length " + std::to_string(T) + " is outside the engine's profile");
    }
    int64_t const V = e.context->getTensorShape("logits").d[2]; // logits [1, T, V]

    size_t const idBytes = ids.size() * sizeof(int64_t);
    DeviceBuffer dIds(idBytes), dMask(idBytes), dLogits(static_cast<size_t>(T * V) * sizeof(float));
    cudaStream_t stream{};
    check(cudaStreamCreate(&stream), "stream");
    upload(dIds.ptr, ids, stream);
    upload(dMask.ptr, mask, stream);
    e.context->setTensorAddress("input_ids", dIds.ptr);
    e.context->setTensorAddress("attention_mask", dMask.ptr);
    e.context->setTensorAddress("logits", dLogits.ptr);
    if (!e.context->enqueueV3(stream))
    {
        throw std::runtime_error("enqueueV3 failed");
    }
    std::vector<float> const last
        = download<float>(static_cast<float const*>(dLogits.ptr) + (T - 1) * V, static_cast<size_t>(V), stream);
    cudaStreamDestroy(stream);
    int64_t const next = std::max_element(last.begin(), last.end()) - last.begin();
    std::printf("next token: %lld (%s)\n", static_cast<long long>(next),
        (next >= 32 && next < 127) ? std::string(1, static_cast<char>(next)).c_str() : "non-printable");
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    return mod_example::runMain(run, argc, argv);
}
