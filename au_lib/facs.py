"""The Facial Action Coding System (FACS) table and the AU lists of the datasets.

AU identifiers are integers (FACS numbers). A dataset's AU list is an ordered tuple: column ``i`` of
a label tensor is AU ``DATASET_AUS[name][i]``. Names and muscles follow Ekman, Friesen & Hager (2002).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: its number, name, facial region and the muscle(s) behind it."""

    number: int
    name: str
    region: str  # "upper" (brows, lids), "lower" (nose, cheeks, lips, jaw) or "head"/"eye" for positions
    muscle: str

    @property
    def code(self) -> str:
        """``"AU01"``-style code, as py-feat and OpenFace name their columns."""
        return f"AU{self.number:02d}"


_TABLE: tuple[ActionUnit, ...] = (
    ActionUnit(1, "Inner brow raiser", "upper", "frontalis, pars medialis"),
    ActionUnit(2, "Outer brow raiser", "upper", "frontalis, pars lateralis"),
    ActionUnit(4, "Brow lowerer", "upper", "corrugator supercilii, depressor supercilii, procerus"),
    ActionUnit(5, "Upper lid raiser", "upper", "levator palpebrae superioris"),
    ActionUnit(6, "Cheek raiser", "upper", "orbicularis oculi, pars orbitalis"),
    ActionUnit(7, "Lid tightener", "upper", "orbicularis oculi, pars palpebralis"),
    ActionUnit(9, "Nose wrinkler", "lower", "levator labii superioris alaeque nasi"),
    ActionUnit(10, "Upper lip raiser", "lower", "levator labii superioris"),
    ActionUnit(11, "Nasolabial deepener", "lower", "zygomaticus minor"),
    ActionUnit(12, "Lip corner puller", "lower", "zygomaticus major"),
    ActionUnit(13, "Sharp lip puller", "lower", "levator anguli oris (caninus)"),
    ActionUnit(14, "Dimpler", "lower", "buccinator"),
    ActionUnit(15, "Lip corner depressor", "lower", "depressor anguli oris (triangularis)"),
    ActionUnit(16, "Lower lip depressor", "lower", "depressor labii inferioris"),
    ActionUnit(17, "Chin raiser", "lower", "mentalis"),
    ActionUnit(18, "Lip pucker", "lower", "incisivii labii superioris and inferioris"),
    ActionUnit(19, "Tongue show", "lower", "(tongue)"),
    ActionUnit(20, "Lip stretcher", "lower", "risorius with platysma"),
    ActionUnit(22, "Lip funneler", "lower", "orbicularis oris"),
    ActionUnit(23, "Lip tightener", "lower", "orbicularis oris"),
    ActionUnit(24, "Lip pressor", "lower", "orbicularis oris"),
    ActionUnit(25, "Lips part", "lower", "depressor labii inferioris, or relaxation of mentalis/orbicularis oris"),
    ActionUnit(26, "Jaw drop", "lower", "masseter relaxed; temporalis and internal pterygoid relaxed"),
    ActionUnit(27, "Mouth stretch", "lower", "pterygoids, digastric"),
    ActionUnit(28, "Lip suck", "lower", "orbicularis oris"),
    ActionUnit(29, "Jaw thrust", "lower", "(jaw)"),
    ActionUnit(30, "Jaw sideways", "lower", "(jaw)"),
    ActionUnit(31, "Jaw clencher", "lower", "masseter"),
    ActionUnit(32, "Lip bite", "lower", "(lips)"),
    ActionUnit(33, "Cheek blow", "lower", "(cheeks)"),
    ActionUnit(34, "Cheek puff", "lower", "(cheeks)"),
    ActionUnit(35, "Cheek suck", "lower", "(cheeks)"),
    ActionUnit(36, "Tongue bulge", "lower", "(tongue)"),
    ActionUnit(37, "Lip wipe", "lower", "(tongue)"),
    ActionUnit(38, "Nostril dilator", "lower", "nasalis, pars alaris"),
    ActionUnit(39, "Nostril compressor", "lower", "nasalis, pars transversa, and depressor septi nasi"),
    ActionUnit(43, "Eyes closed", "upper", "relaxation of levator palpebrae superioris"),
)

FACS: dict[int, ActionUnit] = {au.number: au for au in _TABLE}

# The 12 AUs of the BP4D detection protocol (JAA-Net, ME-GraphAU, FMAE).
BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
# The 8 AUs of the DISFA detection protocol.
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
# The 12 AUs DISFA annotates with intensity.
DISFA_ANNOTATED_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
# The 34 occurrence columns of BP4D+'s AU_OCC files, in file order.
BP4DPLUS_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22,
                                 23, 24, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39)
# AUs with intensity labels in BP4D and BP4D+ (FERA 2015 subset).
BP4D_INTENSITY_AUS: tuple[int, ...] = (6, 10, 12, 14, 17)
# The 20 AUs of py-feat's AU-to-mesh model (its input order, before Pitch, Yaw, Roll).
PYFEAT_MESH_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 17, 20, 23, 24, 25, 26, 28, 43)

DATASET_AUS: dict[str, tuple[int, ...]] = {
    "bp4d": BP4D_AUS,
    "disfa": DISFA_AUS,
    "bp4dplus": BP4D_AUS,  # BP4D+ is evaluated on the BP4D 12 when used for detection
    "bp4dplus_all": BP4DPLUS_AUS,
}


def au(number_or_code: int | str) -> ActionUnit:
    """Look up an AU by number (``12``) or code (``"AU12"``, ``"au12"``, ``"12"``).

    Raises:
        KeyError: with the list of known AUs, if there is no such AU.
    """
    return FACS[parse_au(number_or_code)]


def parse_au(number_or_code: int | str) -> int:
    """Return the FACS number of ``number_or_code``; raise ``KeyError`` if it is not a known AU."""
    if isinstance(number_or_code, str):
        text = number_or_code.strip().upper().removeprefix("AU")
        if not text.isdigit():
            raise KeyError(f"not an AU code: {number_or_code!r} (expected e.g. 'AU12' or 12)")
        number = int(text)
    else:
        number = int(number_or_code)
    if number not in FACS:
        known = ", ".join(str(n) for n in FACS)
        raise KeyError(f"unknown AU {number_or_code!r}; FACS numbers known here: {known}")
    return number
