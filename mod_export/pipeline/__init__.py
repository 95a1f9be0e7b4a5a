"""The export job for every target (onnx, trt, triton): `ExportOptions` (how), `ExportJob` (what and where),
`run_export_job` (the stages, mod_export/pipeline/job.py)."""

from mod_export.pipeline.job import ExportJob, run_export_job
from mod_export.pipeline.options import ExportOptions

__all__ = ["ExportJob", "ExportOptions", "run_export_job"]
