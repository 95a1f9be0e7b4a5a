/*
 * Entry points of libmod_export_plugins.so for IPluginRegistry::loadLibrary, trtexec --dynamicPlugins and
 * Polygraphy --plugins: getCreators (V3) and setLoggerFinder. No libnvinfer symbol is needed to link.
 * Neither lets an exception cross the C boundary.
 */
#include "../scatterPlugin/modScatterPlugin.h"
#include "../topkGatherPlugin/modTopKGatherPlugin.h"

#define MOD_PLUGIN_API extern "C" __attribute__((visibility("default")))

MOD_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        static mod_export::MoDTopKGatherCreator topKGatherCreator;
        static mod_export::MoDScatterCreator scatterCreator;
        static nvinfer1::IPluginCreatorInterface* const creators[] = {&topKGatherCreator, &scatterCreator};
        nbCreators = 2;
        return creators;
    }
    MOD_CATCH_AND_REPORT("mod_export", nullptr)
    return nullptr;
}

MOD_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    mod_export::setPluginLoggerFinder(finder);
}
