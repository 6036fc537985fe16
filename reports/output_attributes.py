"""What every DICOM output (SEG, SR, key image) writes alike about its series, its instance and the equipment that
made it, from the output's options and its date (`output_dates`).

`highdicom_arguments` gives them as the keyword arguments of highdicom's constructors (``Segmentation``,
``ComprehensiveSR``, ``SCImage``); the Encapsulated PDF, built with pydicom, takes `software_versions`.
"""

from __future__ import annotations

from typing import Any, Protocol

from sarcoscreen.reports.output_dates import OutputDateTime

__all__ = ["OutputSeriesOptions", "highdicom_arguments", "software_versions"]


class OutputSeriesOptions(Protocol):
    """The options every output has (`SegOptions`, `SrOptions`, `KeyImageOptions`)."""

    @property
    def series_number(self) -> int: ...

    @property
    def instance_number(self) -> int: ...

    @property
    def manufacturer(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def software_version(self) -> str: ...


def software_versions(options: OutputSeriesOptions) -> str:
    """Software Versions (0018,1020): the configured version, ``unknown`` when there is none."""
    return options.software_version or "unknown"


def highdicom_arguments(options: OutputSeriesOptions, when: OutputDateTime) -> dict[str, Any]:
    """Series and instance number, manufacturer, model, software versions, and the content and series date and
    time (all `when`), as keyword arguments of a highdicom constructor."""
    return {
        "series_number": options.series_number,
        "instance_number": options.instance_number,
        "manufacturer": options.manufacturer,
        "manufacturer_model_name": options.model_name,
        "software_versions": software_versions(options),
        "content_date": when.date,
        "content_time": when.time,
        "series_date": when.date,
        "series_time": when.time,
    }
