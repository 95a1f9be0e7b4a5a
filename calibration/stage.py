"""What a precision stage returns: the reduced forms and what to record about them in report.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from mod_export.exporter.onnx_export import ExportedForms


@dataclass
class StageResult:
    forms: ExportedForms
    details: dict = field(default_factory=dict)
