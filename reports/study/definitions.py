"""Definitions of low muscle mass by DXA: the reference standard of the validation study.

The validation study asks how well CT-derived SMI identifies patients whose DXA appendicular skeletal muscle mass
index (ASMI = appendicular lean mass / height^2) is below a published, sex-specific cut-off:

* **AWGS 2019** (default) - Chen L-K, Woo J, Assantachai P, et al. *Asian Working Group for Sarcopenia: 2019
  Consensus Update on Sarcopenia Diagnosis and Treatment.* J Am Med Dir Assoc 2020;21(3):300-307.e2.
  doi:10.1016/j.jamda.2019.12.012. Low muscle mass by DXA: < 7.0 kg/m2 in men, < 5.4 kg/m2 in women.
* **EWGSOP2** - Cruz-Jentoft AJ, Bahat G, Bauer J, et al. *Sarcopenia: revised European consensus on definition
  and diagnosis.* Age Ageing 2019;48(1):16-31. doi:10.1093/ageing/afy169. Low muscle quantity: ASM/height^2
  < 7.0 kg/m2 in men, < 5.5 kg/m2 in women.

Both use a strict "<": a DXA SMI equal to the cut-off is not low. These are DXA cut-offs; they say nothing about
CT-derived SMI, whose cut-offs a site derives from its own cohort (see `statistics.youden`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AWGS_2019", "DEFINITIONS", "EWGSOP2", "LowMuscleMassDefinition", "definition_by_key"]


@dataclass(frozen=True)
class LowMuscleMassDefinition:
    """A sex-specific DXA SMI cut-off: low muscle mass when DXA SMI < the cut-off of the patient's sex."""

    key: str
    name: str
    women_kg_m2: float
    men_kg_m2: float
    citation: str

    def cutoff(self, sex: str) -> float:
        if sex == "F":
            return self.women_kg_m2
        if sex == "M":
            return self.men_kg_m2
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")

    def is_low(self, dxa_smi_kg_m2: float, sex: str) -> bool:
        return dxa_smi_kg_m2 < self.cutoff(sex)

    def describe(self) -> str:
        """The text written as ``reference_standard`` into calibration files and reports."""
        return (f"{self.name}: DXA SMI (appendicular lean mass / height^2) < {self.women_kg_m2:.1f} kg/m2 (women), "
                f"< {self.men_kg_m2:.1f} kg/m2 (men)")


AWGS_2019 = LowMuscleMassDefinition(
    key="awgs2019",
    name="AWGS 2019",
    women_kg_m2=5.4,
    men_kg_m2=7.0,
    citation="Chen L-K et al. Asian Working Group for Sarcopenia: 2019 Consensus Update on Sarcopenia Diagnosis "
             "and Treatment. J Am Med Dir Assoc 2020;21(3):300-307.e2. doi:10.1016/j.jamda.2019.12.012",
)

EWGSOP2 = LowMuscleMassDefinition(
    key="ewgsop2",
    name="EWGSOP2",
    women_kg_m2=5.5,
    men_kg_m2=7.0,
    citation="Cruz-Jentoft AJ et al. Sarcopenia: revised European consensus on definition and diagnosis. "
             "Age Ageing 2019;48(1):16-31. doi:10.1093/ageing/afy169",
)

DEFINITIONS: dict[str, LowMuscleMassDefinition] = {d.key: d for d in (AWGS_2019, EWGSOP2)}


def definition_by_key(key: str) -> LowMuscleMassDefinition:
    try:
        return DEFINITIONS[key.lower()]
    except KeyError:
        raise ValueError(f"unknown definition {key!r}; known: {', '.join(DEFINITIONS)}") from None
