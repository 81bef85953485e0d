"""What the viewer page needs to know about a job's volumes, decided once per page.

* **Window**: a CT image opens in the preset that suits what was segmented: ``lung``
  (1500/-600) when the pipeline or a segment is about lungs, ``bone`` or ``brain`` likewise,
  else ``soft``; other modalities open in ``auto`` (the image's own range).
* **Orientation marks** per plane (:func:`~.render.orientation_marks`).
* **Legend**: each label volume's values, colours and segment names (:mod:`.segments`).
* **Patient line**: name, id, study date and descriptions from the image's source, shown with
  a switch that hides the identifying ones (name, id).
"""

from __future__ import annotations

import re
from typing import Any

from clara_rt.server.console.render import PLANES, orientation_marks
from clara_rt.server.console.volumes import JobVolumes

__all__ = ["IDENTIFYING", "default_window", "viewer_info"]

IDENTIFYING = ("PatientName", "PatientID")
"""Patient-line tags the viewer's "Hide identifiers" switch hides."""
# Preset chosen for a CT image by words in the pipeline's or the segments' names, first match.
_WINDOW_WORDS = (("lung", ("lung", "pulmo", "airway", "nodule")),
                 ("bone", ("bone", "spine", "skelet", "vertebra", "fractur")),
                 ("brain", ("brain", "stroke", "hemorrh", "haemorrh")))


def viewer_info(found: JobVolumes, pipeline: str) -> dict[str, Any]:
    """The viewer page's facts about ``found`` for a job of pipeline ``pipeline``.

    Returns:
        ``shape``, ``spacing``, ``source``, ``modality``, ``auto`` and ``window`` (the initial
        preset), ``labels`` (``[(path, [values], [(r, g, b)...], [names])]``), ``marks``
        (plane -> ``{top, bottom, left, right}`` or ``None``) and ``patient``
        (``[(label, text, identifying)]``).
    """
    from clara_rt.operators.output.render import label_color
    labels = []
    for rel in found.labels:
        values = found.label_values(rel)[:32]
        names = found.names.get(rel, {})
        labels.append((rel, values, [label_color(v) for v in values],
                       [names.get(v, "") for v in values]))
    segment_names = [n for *_, names in labels for n in names if n]
    return {"shape": tuple(int(n) for n in found.image.shape), "spacing": found.spacing,
            "source": found.source, "modality": found.modality, "labels": labels,
            "window": default_window(found.modality, pipeline, segment_names),
            "auto": found.auto,
            "marks": {plane: orientation_marks(found.direction, plane, head_up=found.head_up)
                      for plane in PLANES},
            "patient": _patient_line(found.patient)}


def default_window(modality: str | None, pipeline: str, segments: list[str]) -> str:
    """The preset a viewer opens in (see the module docstring)."""
    if modality != "CT":
        return "auto"
    words = " ".join([pipeline, *segments]).lower()
    for preset, cues in _WINDOW_WORDS:
        if any(cue in words for cue in cues):
            return preset
    return "soft"


def _patient_line(tags: dict[str, str]) -> list[tuple[str, str, bool]]:
    shown = []
    for tag, label in (("PatientName", "Patient"), ("PatientID", "ID"),
                       ("StudyDate", "Study date"), ("StudyDescription", "Study"),
                       ("SeriesDescription", "Series")):
        value = tags.get(tag)
        if not value:
            continue
        if tag == "PatientName":
            value = " ".join(part for part in value.split("^") if part)
        elif tag == "StudyDate" and re.fullmatch(r"\d{8}", value):
            value = f"{value[:4]}-{value[4:6]}-{value[6:]}"
        shown.append((label, value, tag in IDENTIFYING))
    return shown
