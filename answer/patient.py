"""Patient context: a structured record or a FHIR R4 Bundle, summarized for the prompt.

The summary goes into the prompts and the age/sex into guideline filters. Patient data never
reaches logs: :class:`Patient` hides its fields from ``repr`` and nothing here logs them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrieval.errors import InputError
from retrieval.filters import SearchFilters


class Lab(BaseModel):
    """One laboratory or vital-sign value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="What was measured, e.g. 'eGFR'.")
    value: str | float = Field(description="The result.")
    unit: str = Field("", description="Unit, e.g. 'mL/min/1.73m2'.")


class Patient(BaseModel):
    """What the answer may take into account about the patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    age: float | None = Field(None, ge=0, le=130, description="Age in years.")
    sex: Literal["female", "male"] | None = Field(None, description="Sex.")
    pregnant: bool | None = Field(None, description="Pregnancy status, when known.")
    conditions: tuple[str, ...] = Field((), description="Diagnoses and problems.")
    medications: tuple[str, ...] = Field((), description="Current medications.")
    allergies: tuple[str, ...] = Field((), description="Allergies and intolerances.")
    labs: tuple[Lab, ...] = Field((), description="Recent laboratory results.")
    notes: str = Field("", max_length=2000, description="Free-text context.")
    omitted: tuple[str, ...] = Field(
        (),
        description="What a large record lost on the way in, e.g. 'Condition: the 30 most "
        "recent of 600,000 kept' (shown as a warning on the answer).",
    )

    def __repr_args__(self) -> Any:  # keep patient data out of logs and tracebacks
        return [("fields", "<redacted>")]

    def summary(self) -> str:
        """One paragraph for the prompt.

        >>> Patient(age=67, sex="female", conditions=("type 2 diabetes",),
        ...         labs=(Lab(name="eGFR", value=38, unit="mL/min"),)).summary()
        '67-year-old female. Conditions: type 2 diabetes. Labs: eGFR 38 mL/min.'
        """
        parts: list[str] = []
        who = " ".join(
            x
            for x in (
                f"{self.age:g}-year-old" if self.age is not None else "",
                self.sex or ("patient" if self.age is not None else ""),
            )
            if x
        )
        if who:
            parts.append(who[0].upper() + who[1:] + ".")
        if self.pregnant:
            parts.append("Pregnant.")
        for label, items in (
            ("Conditions", self.conditions),
            ("Medications", self.medications),
            ("Allergies", self.allergies),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}.")
        if self.labs:
            labs = ", ".join(
                f"{lab.name} {_fmt(lab.value)}{' ' + lab.unit if lab.unit else ''}"
                for lab in self.labs
            )
            parts.append(f"Labs: {labs}.")
        if self.notes:
            parts.append(self.notes.strip())
        return " ".join(parts)

    def filters(self) -> SearchFilters:
        """Guideline filters for this patient (age and sex)."""
        return SearchFilters(patient_age=self.age, patient_sex=self.sex)

    @property
    def empty(self) -> bool:
        return not self.summary()


def _fmt(value: str | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class PatientError(InputError):
    """A patient record could not be read; the message says which field and why."""

    exit_code: ClassVar[int] = 2  # a bad --patient file is a usage error of the command line


MAX_BYTES = 10_000_000  # a patient file or JSON text
MAX_PER_TYPE = 30  # conditions, medications, allergies, labs: the most recent kept


def load_patient(
    source: Path | str | Mapping[str, Any],
    *,
    max_bytes: int = MAX_BYTES,
    max_per_type: int = MAX_PER_TYPE,
) -> Patient:
    """A :class:`Patient` from a file path, a JSON string or a mapping.

    Accepts evidex's own record (the fields of :class:`Patient`) and FHIR R4 Bundles with
    Patient, Condition, MedicationStatement / MedicationRequest, AllergyIntolerance and
    Observation resources, validated as strictly as evidex's own record: a field of the wrong
    type is an error naming the entry, the resource and the field. A file or text over
    ``max_bytes`` is refused; of a larger history the ``max_per_type`` most recent conditions,
    medications, allergies and labs are kept, and what was cut is in ``Patient.omitted``.
    """
    where = "the patient record"
    if isinstance(source, Path):
        where = str(source)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise PatientError(f"cannot read {source}: {exc.strerror or exc}") from exc
        if size > max_bytes:
            raise PatientError(
                f"{source} is {size / 1e6:.1f} MB; a patient record may be at most "
                f"{max_bytes / 1e6:.0f} MB: export this patient's recent resources only"
            )
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PatientError(f"cannot read {source}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise PatientError(f"{source} is not valid JSON: {exc}") from exc
    elif isinstance(source, str):
        if len(source) > max_bytes:
            raise PatientError(
                f"the patient record has {len(source):,} characters; the limit is {max_bytes:,}"
            )
        try:
            data = json.loads(source)
        except ValueError as exc:
            raise PatientError(f"the patient record is not valid JSON: {exc}") from exc
    else:
        data = dict(source)
    if not isinstance(data, dict):
        raise PatientError(f"{where} must be a JSON object, not {type(data).__name__}")
    try:
        if data.get("resourceType") == "Bundle":
            return _from_fhir(data, where, max_per_type)
        if "resourceType" in data:
            raise PatientError(
                f"{where} is a FHIR {data['resourceType']}; pass a Bundle holding the Patient "
                "and their Condition/MedicationStatement/Observation resources"
            )
        if "omitted" in data:
            raise PatientError(f"{where}: omitted: set by evidex, not by the record")
        return Patient.model_validate(_normalize(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PatientError(f"{where}: {problems}") from exc


def _normalize(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    sex = out.get("sex") or out.pop("gender", None)
    if isinstance(sex, str):
        out["sex"] = {"f": "female", "m": "male", "woman": "female", "man": "male"}.get(
            sex.strip().lower(), sex.strip().lower()
        )
    for key in ("conditions", "medications", "allergies"):
        if isinstance(out.get(key), str):
            out[key] = [out[key]]
    labs = out.get("labs")
    if isinstance(labs, Mapping):  # {"eGFR": "38 mL/min"} shorthand
        out["labs"] = [{"name": k, "value": v} for k, v in labs.items()]
    return out


# -- FHIR R4 ---------------------------------------------------------------------------------
# Only the fields evidex reads are declared, strictly typed (a number is not a string, a string
# is not a number); every other FHIR field is allowed and ignored.


class _Fhir(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class _Coding(_Fhir):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class _Concept(_Fhir):
    coding: list[_Coding] = []
    text: str | None = None

    def name(self) -> str:
        if self.text and self.text.strip():
            return self.text.strip()
        for c in self.coding:
            if (c.display or c.code or "").strip():
                return str(c.display or c.code).strip()
        return ""


def _name(concept: _Concept | None) -> str:
    return concept.name() if concept is not None else ""


class _Quantity(_Fhir):
    value: float | None = None
    unit: str | None = None
    code: str | None = None


class _Reference(_Fhir):
    reference: str | None = None
    display: str | None = None


class _CodeableReference(_Fhir):
    concept: _Concept | None = None
    reference: _Reference | None = None


_DATE = r"^\d{4}(-\d{2}(-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$"
FhirDate = Annotated[str, Field(pattern=_DATE)]


class _Resource(_Fhir):
    resourceType: str
    id: str | None = None


class _PatientRes(_Resource):
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birthDate: FhirDate | None = None


class _ConditionRes(_Resource):
    code: _Concept | None = None
    clinicalStatus: _Concept | None = None
    recordedDate: FhirDate | None = None
    onsetDateTime: FhirDate | None = None

    def when(self) -> str:
        return self.recordedDate or self.onsetDateTime or ""


class _MedicationRes(_Resource):
    status: str | None = None
    medicationCodeableConcept: _Concept | None = None
    medicationReference: _Reference | None = None
    medication: _CodeableReference | None = None  # R5 shape
    authoredOn: FhirDate | None = None
    dateAsserted: FhirDate | None = None
    effectiveDateTime: FhirDate | None = None

    def when(self) -> str:
        return self.authoredOn or self.effectiveDateTime or self.dateAsserted or ""

    def drug(self) -> str:
        name = _name(self.medicationCodeableConcept)
        if not name and self.medication is not None:
            name = _name(self.medication.concept)
        if not name and self.medicationReference is not None:
            name = (self.medicationReference.display or "").strip()
        return name


class _AllergyRes(_Resource):
    code: _Concept | None = None
    recordedDate: FhirDate | None = None

    def when(self) -> str:
        return self.recordedDate or ""


class _ObservationRes(_Resource):
    code: _Concept
    valueQuantity: _Quantity | None = None
    valueString: str | None = None
    valueCodeableConcept: _Concept | None = None
    valueBoolean: bool | None = None
    effectiveDateTime: FhirDate | None = None
    issued: FhirDate | None = None

    def when(self) -> str:
        return self.effectiveDateTime or self.issued or ""


_READ: dict[str, type[_Resource]] = {
    "Patient": _PatientRes,
    "Condition": _ConditionRes,
    "MedicationStatement": _MedicationRes,
    "MedicationRequest": _MedicationRes,
    "AllergyIntolerance": _AllergyRes,
    "Observation": _ObservationRes,
}
_INACTIVE_CONDITION = {"resolved", "inactive", "remission"}
_INACTIVE_MEDICATION = {"stopped", "completed", "cancelled", "entered-in-error"}


def _entries(bundle: Mapping[str, Any], where: str) -> list[tuple[int, Mapping[str, Any]]]:
    entry = bundle.get("entry", [])
    if not isinstance(entry, list):
        raise PatientError(
            f"{where}: Bundle.entry must be a list of entries, not {type(entry).__name__}"
        )
    out = []
    for i, e in enumerate(entry):
        res = e.get("resource") if isinstance(e, Mapping) else None
        if not isinstance(res, Mapping):
            raise PatientError(f"{where}: entry[{i}] has no resource object")
        if not isinstance(res.get("resourceType"), str):
            raise PatientError(f"{where}: entry[{i}].resource has no resourceType")
        out.append((i, res))
    return out


def _validated(i: int, res: Mapping[str, Any], where: str) -> _Resource | None:
    model = _READ.get(str(res["resourceType"]))
    if model is None:
        return None  # Encounter, Practitioner, ...: not read
    try:
        return model.model_validate(res)
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(p) for p in e["loc"])
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise PatientError(
            f"{where}: entry[{i}] ({res['resourceType']}"
            f"{' ' + str(res.get('id'))[:40] if res.get('id') else ''}): {field}: {e['msg']}{more}"
        ) from None


def _recent(items: list[tuple[str, Any, str]], limit: int) -> tuple[list[Any], int]:
    """The ``limit`` most recent distinct items of (date, value, name); and how many distinct
    ones were cut."""
    ordered = sorted(enumerate(items), key=lambda t: (t[1][0], -t[0]), reverse=True)
    seen: dict[str, Any] = {}
    for _, (_, value, name) in ordered:
        seen.setdefault(name.lower(), value)
    values = list(seen.values())
    return values[:limit], max(0, len(values) - limit)


def _from_fhir(
    bundle: dict[str, Any], where: str = "the bundle", limit: int = MAX_PER_TYPE
) -> Patient:
    fields: dict[str, Any] = {}
    found: dict[str, list[tuple[str, Any, str]]] = {
        "conditions": [], "medications": [], "allergies": [], "labs": []
    }  # fmt: skip
    for i, raw in _entries(bundle, where):
        res = _validated(i, raw, where)
        if isinstance(res, _PatientRes):
            if res.birthDate:
                fields["age"] = _age(res.birthDate)
            if res.gender in ("female", "male"):
                fields["sex"] = res.gender
        elif isinstance(res, _ConditionRes):
            name = _name(res.code)
            if name and _name(res.clinicalStatus).lower() not in _INACTIVE_CONDITION:
                found["conditions"].append((res.when(), name, name))
        elif isinstance(res, _MedicationRes):
            drug = res.drug()
            if drug and (res.status or "").lower() not in _INACTIVE_MEDICATION:
                found["medications"].append((res.when(), drug, drug))
        elif isinstance(res, _AllergyRes) and _name(res.code):
            found["allergies"].append((res.when(), _name(res.code), _name(res.code)))
        elif isinstance(res, _ObservationRes) and res.code.name():
            name = res.code.name()
            if "pregnan" in name.lower() and res.valueBoolean is not None:
                fields["pregnant"] = res.valueBoolean
            q = res.valueQuantity
            if q is not None and q.value is not None:
                lab = {"name": name, "value": q.value, "unit": q.unit or q.code or ""}
            elif res.valueString or _name(res.valueCodeableConcept):
                lab = {"name": name, "value": res.valueString or _name(res.valueCodeableConcept)}
            else:
                continue
            found["labs"].append((res.when(), lab, name))
    omitted = []
    labels = {"conditions": "Condition", "medications": "medication", "allergies": "allergy",
              "labs": "lab"}  # fmt: skip
    for key, items in found.items():
        kept, cut = _recent(items, limit)
        fields[key] = kept
        if cut:
            omitted.append(
                f"{labels[key]}: the {len(kept)} most recent of {len(kept) + cut:,} kept"
            )
    fields["omitted"] = tuple(omitted)
    return Patient.model_validate(fields)


def _age(birth: str, today: datetime.date | None = None) -> float | None:
    """Age in whole years from a FHIR birth date (a year alone counts from mid-year).

    >>> _age("1950-06-15", datetime.date(2026, 6, 14)), _age("1950", datetime.date(2026, 12, 1))
    (75.0, 76.0)
    """
    try:
        born = datetime.date.fromisoformat(birth[:10] if len(birth) >= 10 else f"{birth[:4]}-07-01")
    except ValueError:
        return None
    today = today or datetime.date.today()
    return float(today.year - born.year - ((today.month, today.day) < (born.month, born.day)))
