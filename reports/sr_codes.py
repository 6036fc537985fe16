"""Every coded concept of the TID 1500 SR (and the SEG's segment category), each with where its code comes from.

Rules (as for the catalogue, ``inference/_catalogue_codes.py``):

* a DICOM PS3.16 context group (CID) or template (TID) is the source where the concept is there; checked in the
  machine-readable PS3.16 of pydicom 3.0 (``pydicom/sr/_concepts_dict.py``, ``_cid_dict.py``);
* otherwise a published standard terminology with the publication named (LOINC body height);
* units are UCUM codes (PS3.16 CID 82 "Units of Measurement" admits any UCUM unit; the ones listed in CID 7181
  say so);
* a concept no standard scheme has gets a code of sarcoscreen's private scheme ``99SARCO``
  (`sarcoscreen.inference.coding.PRIVATE_SCHEME`), declared in the SR's Coding Scheme Identification Sequence.
  The catalogue uses ``SARCO-0001`` to ``SARCO-0999`` (merged-muscle labels); the SR uses ``SARCO-1001`` on.
  Codes are never renumbered or reused.

`docs/dicom-outputs.md` lists the SR tree with these concepts.
"""

from __future__ import annotations

import highdicom as hd

from sarcoscreen.inference.catalogue import Group
from sarcoscreen.inference.coding import PRIVATE_SCHEME, Code
from sarcoscreen.inference.measure import Classification, Completeness

__all__ = [
    "ALL_CODES",
    "COMPLETENESS_VALUES",
    "GROUP_FINDINGS",
    "SCREENING_VALUES",
    "UNCERTAINTY_MEASURES",
    "coded",
]

_PS316 = "DICOM PS3.16"
_PRIV = "sarcoscreen private code: no such concept in DICOM PS3.16 (pydicom 3.0 concept dictionary)"

# --- Document and groups -------------------------------------------------------------------------------------
PROCEDURE_CT = Code("25045-6", "LN", "CT unspecified body region", f"{_PS316} CID 100")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations", f"{_PS316} TID 1500 row 12")
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure", f"{_PS316} CID 7150")
SKELETAL_MUSCLE = Code("127954009", "SCT", "Skeletal muscle", f"{_PS316} CID 7710")
BILATERAL = Code("51440002", "SCT", "Bilateral", f"{_PS316} CID 244")
LEFT = Code("7771000", "SCT", "Left", f"{_PS316} CID 244")
RIGHT = Code("24028007", "SCT", "Right", f"{_PS316} CID 244")

# --- Measurements --------------------------------------------------------------------------------------------
VOLUME = Code("118565006", "SCT", "Volume", f"{_PS316} CID 7469")
VOLUME_METHOD = Code("126030", "DCM", "Sum of segmented voxel method for volume", f"{_PS316} CID 7474")
ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient", f"{_PS316} CID 7469 (also CID 7180)")
MEAN = Code("373098007", "SCT", "Mean", f"{_PS316} CID 7464")
STANDARD_DEVIATION = Code("386136009", "SCT", "Standard Deviation", f"{_PS316} CID 7464")
MINIMUM = Code("255605001", "SCT", "Minimum", f"{_PS316} CID 7464")
MASS = Code("118538004", "SCT", "Mass", f"{_PS316} CID 12304 (the property, not 4147007 'Mass' the finding)")
BODY_HEIGHT = Code(
    "8302-2", "LN", "Body height",
    "LOINC 8302-2, the body height of the HL7 FHIR R4 Vital Signs profile (not in a PS3.16 CID; DCM 121207 "
    "'Height' of CID 7469 is the height of an image region)",
)

# --- Units (UCUM) --------------------------------------------------------------------------------------------
GRAM = Code("g", "UCUM", "gram", "UCUM (PS3.16 CID 82)")
CUBIC_CENTIMETER = Code("cm3", "UCUM", "cubic centimeter", f"{_PS316} CID 7181")
HOUNSFIELD_UNIT = Code("[hnsf'U]", "UCUM", "Hounsfield unit", f"{_PS316} CID 7181")
KG_PER_M2 = Code("kg/m2", "UCUM", "kilogram per square meter", "UCUM (PS3.16 CID 82)")
METER = Code("m", "UCUM", "m", f"{_PS316} CID 7063")
MILLIMETER = Code("mm", "UCUM", "mm", f"{_PS316} CID 7460 (also CID 7181)")
RATIO = Code("{ratio}", "UCUM", "ratio", f"{_PS316} CID 7181")
NO_UNITS = Code("1", "UCUM", "no units", f"{_PS316} CID 7181")
NAT = Code("{nat}", "UCUM", "nat",
           "UCUM annotation (a unit of 1 with the annotation nat, UCUM 4.2.3; PS3.16 CID 82 admits any UCUM unit): "
           "the natural unit of information, ln 2 bit; UCUM defines bit but no nat")

# --- Values of qualitative evaluations ------------------------------------------------------------------------
YES = Code("373066001", "SCT", "Yes", f"{_PS316} CID 230")
NO = Code("373067005", "SCT", "No", f"{_PS316} CID 230")
UNDETERMINED = Code("373068000", "SCT", "Undetermined", f"{_PS316} CID 230")

# --- Private concepts (99SARCO) -------------------------------------------------------------------------------
SMI = Code("SARCO-1001", PRIVATE_SCHEME, "Skeletal muscle index",
           f"{_PRIV}; the CT skeletal muscle index, muscle mass of a group / body height squared; no fitting LOINC "
           "either (73964-9 'Body muscle mass Calculated' is whole-body mass from body weight)")
FRACTION_IN_WINDOW = Code("SARCO-1002", PRIVATE_SCHEME,
                          "Fraction of voxels in the skeletal muscle attenuation window", _PRIV)
UNCERTAINTY = Code("SARCO-1003", PRIVATE_SCHEME, "Segmentation uncertainty",
                   f"{_PRIV}; no longer written (until issue 11 it stood for either measure, which only an engine "
                   "note told apart): SARCO-1006 and SARCO-1007 replace it")
UNCERTAINTY_FLAG = Code("SARCO-1004", PRIVATE_SCHEME, "Segmentation uncertainty above QA threshold", _PRIV)
UNCERTAINTY_THRESHOLD = Code("SARCO-1005", PRIVATE_SCHEME, "Segmentation uncertainty QA threshold",
                             f"{_PRIV}; no longer written: SARCO-1008 and SARCO-1009 replace it")
UNCERTAINTY_VARIANCE = Code(
    "SARCO-1006", PRIVATE_SCHEME, "Segmentation uncertainty, mean predictive variance",
    f"{_PRIV}; the mean over the structure's voxels of the predictive variance of the class probabilities over "
    "the Monte-Carlo dropout samples (per-class variance, summed over classes): a variance of probabilities, "
    "without unit (UCUM 1)",
)
UNCERTAINTY_ENTROPY = Code(
    "SARCO-1007", PRIVATE_SCHEME, "Segmentation uncertainty, mean predictive entropy",
    f"{_PRIV}; the mean over the structure's voxels of the entropy of the mean class probability, "
    "-sum p ln p, in nats (natural logarithm; UCUM annotation {nat}: UCUM has bit but no nat)",
)
UNCERTAINTY_THRESHOLD_VARIANCE = Code("SARCO-1008", PRIVATE_SCHEME, "QA threshold of the mean predictive variance",
                                      f"{_PRIV}; the threshold SARCO-1006 is compared with (SARCO-1004)")
UNCERTAINTY_THRESHOLD_ENTROPY = Code("SARCO-1009", PRIVATE_SCHEME, "QA threshold of the mean predictive entropy",
                                     f"{_PRIV}; the threshold SARCO-1007 is compared with (SARCO-1004)")
COMPLETENESS = Code("SARCO-1010", PRIVATE_SCHEME, "Muscle group completeness", _PRIV)
COMPLETE = Code("SARCO-1011", PRIVATE_SCHEME, "Complete", _PRIV)
TRUNCATED = Code("SARCO-1012", PRIVATE_SCHEME, "Truncated by the scan", _PRIV)
NOT_IN_SCAN = Code("SARCO-1013", PRIVATE_SCHEME, "Not in the scan", _PRIV)
NOT_PRODUCED = Code("SARCO-1014", PRIVATE_SCHEME, "Not produced by the segmentation engine", _PRIV)
COMPLETENESS_REASON = Code("SARCO-1015", PRIVATE_SCHEME, "Completeness reason", _PRIV)
UNCERTAIN = Code("SARCO-1016", PRIVATE_SCHEME, "Extent uncertain",
                 f"{_PRIV}; a value of SARCO-1010: a landmark bounding the group is uncertain, so its mass is not "
                 "reported")
NOT_FOUND = Code(
    "SARCO-1019", PRIVATE_SCHEME, "Not found by the segmentation engine",
    f"{_PRIV}; a value of SARCO-1010: a member muscle has no voxels although the scan holds where it lies "
    "(inference/muscle_extents.py, placed by the engine's landmarks) - a segmentation failure to review (a QA flag); "
    "the group's mass is not reported",
)
IN_SCAN_MASS = Code(
    "SARCO-1017", PRIVATE_SCHEME, "Muscle mass inside the scan (lower bound)",
    f"{_PRIV}; the mass of a truncated or uncertain group's muscle inside the scan: a lower bound, never the "
    "group's mass (which is SCT 118538004 'Mass', written only for a complete group)",
)
SCAN_SHORTFALL = Code(
    "SARCO-1018", PRIVATE_SCHEME, "Extent of the group beyond the scan",
    f"{_PRIV}; for a truncated group: how far the group's expected extent reaches beyond the scan (the scan's "
    "shortfall), as the segmentation engine estimates it from landmarks",
)
SARCOPENIA_SUSPECTED = Code(
    "SARCO-1020", PRIVATE_SCHEME, "Sarcopenia suspected",
    f"{_PRIV}; a screening result (SMI below a site-calibrated cut-off), not a diagnosis; values from CID 230",
)
SMI_CUTOFF = Code("SARCO-1021", PRIVATE_SCHEME, "Skeletal muscle index cut-off", _PRIV)
CALIBRATION = Code("SARCO-1022", PRIVATE_SCHEME, "Calibration", f"{_PRIV}; the cut-off file: name and SHA-256")
CLASSIFICATION_REASON = Code("SARCO-1025", PRIVATE_SCHEME, "Classification reason", _PRIV)
HEIGHT_SOURCE = Code("SARCO-1030", PRIVATE_SCHEME, "Body height source", _PRIV)
DENSITY_RULE = Code("SARCO-1031", PRIVATE_SCHEME, "Muscle density rule", _PRIV)
WINDOW_LOWER = Code("SARCO-1032", PRIVATE_SCHEME, "Skeletal muscle attenuation window lower limit", _PRIV)
WINDOW_UPPER = Code("SARCO-1033", PRIVATE_SCHEME, "Skeletal muscle attenuation window upper limit", _PRIV)
ENGINE_NOTE = Code("SARCO-1034", PRIVATE_SCHEME, "Segmentation engine note", _PRIV)
PER_SIDE_MEAN = Code(
    "SARCO-1040", PRIVATE_SCHEME, "Mean of the left and right sides' values (per side)",
    f"{_PRIV}; a Measurement Method (TID 300): the screening SMI of side rule mean, the mean of the two sides' SMI "
    "- half the both-sides SMI, which is SARCO-1042",
)
PER_SIDE_LOWER = Code(
    "SARCO-1041", PRIVATE_SCHEME, "Lower of the left and right sides' values (per side)",
    f"{_PRIV}; a Measurement Method (TID 300): the screening SMI of side rule min, the lower of the two sides' SMI",
)
BOTH_SIDES = Code(
    "SARCO-1042", PRIVATE_SCHEME, "Both sides together",
    f"{_PRIV}; a Measurement Method (TID 300): the SMI of both sides' mass / height^2, next to a per-side "
    "screening SMI",
)

GROUP_FINDINGS: dict[Group, Code] = {
    Group.GLUTEAL: Code("SARCO-1101", PRIVATE_SCHEME, "Gluteal muscle group",
                        f"{_PRIV}; gluteus maximus + medius + minimus of the reference study"),
    Group.ABOVE_KNEE: Code("SARCO-1102", PRIVATE_SCHEME, "Muscles above the knee joint",
                           f"{_PRIV}; the hip and thigh muscles except psoas major (reference study)"),
    Group.ALL: Code("SARCO-1103", PRIVATE_SCHEME, "All lower-extremity muscles",
                    f"{_PRIV}; the above-knee group plus the lower-leg muscles (reference study)"),
    Group.UPPER_GLUTEAL: Code(
        "SARCO-1104", PRIVATE_SCHEME, "Gluteal muscles from the iliac crest to the femoral head centre",
        f"{_PRIV}; sarcoscreen's own group, not one of the reference study's: the gluteal group's muscle between "
        "the top of the iliac crest and the femoral head centre, per side (docs/engines.md)"),
}
"""The group concepts (Finding of a group's TID 1501 group); one per `Group`, checked by the tests."""

COMPLETENESS_VALUES: dict[Completeness, Code] = {
    Completeness.COMPLETE: COMPLETE,
    Completeness.TRUNCATED: TRUNCATED,
    Completeness.UNCERTAIN: UNCERTAIN,
    Completeness.NOT_IN_SCAN: NOT_IN_SCAN,
    Completeness.NOT_FOUND: NOT_FOUND,
    Completeness.NOT_PRODUCED: NOT_PRODUCED,
}

UNCERTAINTY_MEASURES: dict[str, tuple[Code, Code, Code]] = {
    "variance": (UNCERTAINTY_VARIANCE, UNCERTAINTY_THRESHOLD_VARIANCE, NO_UNITS),
    "entropy": (UNCERTAINTY_ENTROPY, UNCERTAINTY_THRESHOLD_ENTROPY, NAT),
}
"""Per `engines.base.UNCERTAINTY_MEASURES` value: (the structure's value, the QA threshold, their unit)."""

SCREENING_VALUES: dict[Classification, Code] = {
    Classification.SUSPECTED: YES,
    Classification.NOT_SUSPECTED: NO,
    Classification.NOT_CLASSIFIED: UNDETERMINED,
}

ALL_CODES: tuple[Code, ...] = tuple(
    value for value in globals().values() if isinstance(value, Code)
) + tuple(GROUP_FINDINGS.values())
"""Every concept defined here (for the documentation and the tests)."""


def coded(code: Code) -> hd.sr.CodedConcept:
    """`code` as highdicom's coded concept (Code Sequence Macro, PS3.3 Table 8.8-1)."""
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)
