"""Coded concepts of the catalogue's anatomies, each with its source. See `catalogue` and ``docs/catalogue.md``.

Rules (no invented codes):

* A DICOM PS3.16 context group (CID) is the source where the concept is there (bones, skeletal muscle).
* Otherwise the concept is taken from a published SNOMED CT value-set expansion and, where possible, cross-checked
  in a second, independent source; every source is named in `Code.source`.
* "Structure of ..." concepts are used throughout, never the "Entire ..." ones (e.g. gluteus maximus 206007, not
  181674001): DICOM's anatomic context groups use the structure concepts (e.g. CID 4031 femur 71341001 is
  "Bone structure of femur"), and a segmentation or a measurement site is a structure, not necessarily the entire
  organ.
* A label that merges several muscles gets a single SNOMED CT concept only if one means exactly that grouping;
  otherwise a private code of the coding scheme "99SARCO" (private designators start with "99", DICOM PS3.3
  section 8.2), which the SEG and SR writers must declare in the Coding Scheme Identification Sequence.
* Meanings are the source's display: the DICOM code meaning where a CID is the source, otherwise the SNOMED CT
  preferred term of the International Edition expansion.
"""

from __future__ import annotations

from sarcoscreen.inference.coding import PRIVATE_SCHEME, Code

# Sources, named once. Expansions are by terminology servers from the SNOMED CT release named.
_PS316 = "DICOM PS3.16"
_IPS = "SNOMED CT Intl 2024-08-01 per HL7 IPS body-site value set expansion (nzhts body-site-uv-ips.json)"
_NZ = "SNOMED CT NZ 2024-10-01 per NZHTS canshare-soft-tissue-extremity-topography expansion"
_FHIR = "HL7 FHIR R4 body-site value set expansion"
_SILPH = "PH Road Safety IG SILPH-ListofBodySites value set"
_MII = "MII Onkologie ConceptMap mii-cm-onko-strahlentherapie-zielgebiet-sct (oBDS 6.15 Huefte)"
_TS = "TotalSegmentator totalsegmentator_snomed_mapping.csv"
_MOOSE = "MOOSE moose_snomed_mapping.csv"
_PRIVATE = "sarcoscreen private code: no single SNOMED CT concept for"

_MUSCLE_SOURCE = f"{_PS316} CID 7710 (also CID 8134); {_IPS}; {_TS}"

CODES: dict[str, Code] = {
    # Hip muscles.
    "gluteus_maximus": Code(
        "206007", "SCT", "Structure of gluteus maximus muscle",
        f"{_IPS}; {_FHIR}. Not 181674001 (Entire gluteus maximus muscle) of {_TS} and {_MOOSE}",
    ),
    "gluteus_medius": Code(
        "78333006", "SCT", "Structure of gluteus medius muscle", f"{_IPS}; {_TS}; {_MOOSE}",
    ),
    "gluteus_minimus": Code(
        "75297007", "SCT", "Structure of gluteus minimus muscle",
        f"{_IPS}; {_MOOSE}; {_TS} lateralised rows (its unlateralised gluteus_minimus row wrongly has 78333006)",
    ),
    "iliacus": Code("34281002", "SCT", "Structure of iliacus muscle", _IPS),
    "obturator_externus": Code("73048009", "SCT", "External obturator muscle structure", _IPS),
    "obturator_internus": Code("82115007", "SCT", "Internal obturator muscle structure", f"{_IPS}; {_SILPH}"),
    "pectineus": Code("71875009", "SCT", "Structure of pectineus muscle", _IPS),
    "piriformis": Code("75699001", "SCT", "Structure of piriformis muscle", f"{_IPS}; {_SILPH}"),
    "psoas_major": Code("57240007", "SCT", "Structure of psoas major muscle", f"{_IPS}; {_SILPH}"),
    # Thigh muscles.
    "adductors": Code(
        "SARCO-0001", PRIVATE_SCHEME, "Adductor longus, adductor brevis and adductor magnus muscles",
        f"{_PRIVATE} adductor longus + brevis + magnus (303803003, hip adductor muscles, and 410766005, adductor "
        "compartment of thigh, also cover gracilis and pectineus, labelled separately)",
    ),
    "biceps_femoris": Code("89241006", "SCT", "Biceps femoris muscle structure", f"{_IPS}; {_NZ}"),
    "gracilis": Code("2577006", "SCT", "Structure of gracilis muscle", f"{_IPS}; {_FHIR}"),
    "rectus_femoris": Code("72226001", "SCT", "Rectus femoris muscle structure", f"{_IPS}; {_SILPH}"),
    "sartorius": Code("12595009", "SCT", "Structure of sartorius muscle", _IPS),
    "semimembranosus": Code("84010001", "SCT", "Semimembranosus muscle structure", _IPS),
    "semitendinosus": Code("50340007", "SCT", "Semitendinosus muscle structure", _IPS),
    "tensor_fasciae_latae": Code("28190000", "SCT", "Structure of tensor fasciae latae muscle", _IPS),
    "vastus_lateralis_intermedius": Code(
        "SARCO-0002", PRIVATE_SCHEME, "Vastus lateralis and vastus intermedius muscles",
        f"{_PRIVATE} vastus lateralis + intermedius (only 1403006 vastus lateralis, 57733007 vastus intermedius "
        "and 21989003 quadriceps femoris, which adds rectus femoris and vastus medialis)",
    ),
    "vastus_medialis": Code("3478008", "SCT", "Structure of vastus medialis muscle", f"{_IPS}; {_FHIR}"),
    # Lower-leg muscles.
    "tibialis_anterior": Code("73508007", "SCT", "Tibialis anterior muscle structure", _IPS),
    "toe_extensors": Code(
        "SARCO-0003", PRIVATE_SCHEME, "Extensor digitorum longus and extensor hallucis longus muscles",
        f"{_PRIVATE} extensor digitorum longus + extensor hallucis longus (anterior crural muscles also include "
        "tibialis anterior and peroneus tertius)",
    ),
    "fibularis": Code(
        "307033005", "SCT", "Lateral crural muscle structure",
        f"{_IPS}; the lateral crural muscles are exactly peroneus longus and brevis (Gray's Anatomy 1918, 8c). "
        "Not the broader 25442002 Peroneal muscle structure: the peroneal muscles include peroneus tertius",
    ),
    "gastrocnemius": Code("35616000", "SCT", "Gastrocnemius muscle structure", f"{_IPS}; {_NZ}"),
    "soleus": Code("78376008", "SCT", "Soleus muscle structure", _IPS),
    "deep_posterior_leg": Code(
        "SARCO-0004", PRIVATE_SCHEME,
        "Tibialis posterior, flexor digitorum and flexor hallucis longus",
        f"{_PRIVATE} tibialis posterior + flexor digitorum longus + flexor hallucis longus (410764008 is the "
        "posterior fascial compartment; the deep posterior crural group also includes popliteus)",
    ),
    # Bones.
    "hip_bone": Code(
        "28254004", "SCT", "Innominate bone structure",
        f"{_IPS}; {_MII}. No DICOM CID has the whole hip bone: {_PS316} CID 4031 Ilium 22356005 is a part, "
        "CID 7304 Pelvis 118645006 adds sacrum and coccyx",
    ),
    "sacrum": Code("54735007", "SCT", "Sacrum", f"{_PS316} CID 4031; {_TS}; {_MOOSE}"),
    "femur": Code("71341001", "SCT", "Femur", f"{_PS316} CID 4031; {_TS}; {_MOOSE}"),
    "patella": Code("64234005", "SCT", "Patella", f"{_PS316} CID 4031; {_TS}; {_MOOSE}"),
    "tibia": Code("12611008", "SCT", "Tibia", f"{_PS316} CID 7304 (also CID 8134, CID 12021); {_TS}; {_MOOSE}"),
    "fibula": Code("87342007", "SCT", "Fibula", f"{_PS316} CID 4031; {_TS}; {_MOOSE}"),
    # Muscle regions: the region itself is `Anatomy.region`.
    "gluteal_region_muscle": Code("127954009", "SCT", "Skeletal muscle", _MUSCLE_SOURCE),
    "hip_thigh_muscle": Code("127954009", "SCT", "Skeletal muscle", _MUSCLE_SOURCE),
    "lower_leg_muscle": Code("127954009", "SCT", "Skeletal muscle", _MUSCLE_SOURCE),
}
