/*
 * Entry points of libmod_export_plugins.so for IPluginRegistry::loadLibrary, trtexec --dynamicPlugins and
 * Polygraphy --plugins: getCreators (V3) and setLoggerFinder. No libnvinfer symbol is needed to link.
 * Neither lets an exception cross the C boundary.
 */
#include "../cacheAppendPlugin/modCacheAppendPlugin.h"
#include "../scatterPlugin/modScatterPlugin.h"
#include "../takeCountPlugin/modTakeCountPlugin.h"
#include "../topkGatherPlugin/modTopKGatherPlugin.h"

#define MOD_PLUGIN_API extern "C" __attribute__((visibility("default")))

MOD_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        static mod_export::MoDTopKGatherCreator topKGatherCreator;
        static mod_export::MoDScatterCreator scatterCreator;
        static mod_export::MoDTakeCountCreator takeCountCreator;
        static mod_export::MoDCacheAppendCreator cacheAppendCreator;
        static nvinfer1::IPluginCreatorInterface* const creators[]
            = {&topKGatherCreator, &scatterCreator, &takeCountCreator, &cacheAppendCreator};
        nbCreators = 4;
        return creators;
    }
    MOD_CATCH_AND_REPORT("mod_export", nullptr)
    return nullptr;
}

MOD_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    mod_export::setPluginLoggerFinder(finder);
}
