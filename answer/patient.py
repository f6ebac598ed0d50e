"""Patient context: a structured record or a FHIR R4 Bundle, summarized for the prompt.

The summary goes into the prompts and the age/sex into guideline filters. Patient data never
reaches logs: :class:`Patient` hides its fields from ``repr`` and nothing here logs them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

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


def load_patient(source: Path | str | Mapping[str, Any]) -> Patient:
    """A :class:`Patient` from a file path, a JSON string or a mapping.

    Accepts evidex's own record (the fields of :class:`Patient`) and FHIR R4 Bundles with
    Patient, Condition, MedicationStatement / MedicationRequest, AllergyIntolerance and
    Observation resources.
    """
    where = "the patient record"
    if isinstance(source, Path):
        where = str(source)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PatientError(f"cannot read {source}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise PatientError(f"{source} is not valid JSON: {exc}") from exc
    elif isinstance(source, str):
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
            return _from_fhir(data)
        if "resourceType" in data:
            raise PatientError(
                f"{where} is a FHIR {data['resourceType']}; pass a Bundle holding the Patient "
                "and their Condition/MedicationStatement/Observation resources"
            )
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


def _concept(obj: Any) -> str:
    """Display text of a FHIR CodeableConcept."""
    if not isinstance(obj, Mapping):
        return ""
    if obj.get("text"):
        return str(obj["text"])
    for coding in obj.get("coding") or []:
        if isinstance(coding, Mapping) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _age(birth: str, today: datetime.date | None = None) -> float | None:
    try:
        born = datetime.date.fromisoformat(birth[:10] if len(birth) >= 10 else f"{birth[:4]}-07-01")
    except ValueError:
        return None
    today = today or datetime.date.today()
    return float(today.year - born.year - ((today.month, today.day) < (born.month, born.day)))


def _from_fhir(bundle: dict[str, Any]) -> Patient:
    fields: dict[str, Any] = {"conditions": [], "medications": [], "allergies": [], "labs": []}
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(res, Mapping):
            continue
        kind = res.get("resourceType")
        if kind == "Patient":
            if res.get("birthDate"):
                fields["age"] = _age(str(res["birthDate"]))
            if res.get("gender") in ("female", "male"):
                fields["sex"] = res["gender"]
        elif kind == "Condition":
            status = _concept(res.get("clinicalStatus")).lower()
            if status not in ("resolved", "inactive", "remission") and _concept(res.get("code")):
                fields["conditions"].append(_concept(res.get("code")))
        elif kind in ("MedicationStatement", "MedicationRequest"):
            if str(res.get("status", "")).lower() in ("stopped", "completed", "cancelled"):
                continue
            name = _concept(res.get("medicationCodeableConcept")) or _concept(
                (res.get("medication") or {}).get("concept")
            )
            ref = res.get("medicationReference") or {}
            name = name or (str(ref.get("display", "")) if isinstance(ref, Mapping) else "")
            if name:
                fields["medications"].append(name)
        elif kind == "AllergyIntolerance" and _concept(res.get("code")):
            fields["allergies"].append(_concept(res.get("code")))
        elif kind == "Observation" and _concept(res.get("code")):
            q = res.get("valueQuantity")
            if isinstance(q, Mapping) and q.get("value") is not None:
                fields["labs"].append(
                    {
                        "name": _concept(res["code"]),
                        "value": q["value"],
                        "unit": str(q.get("unit") or q.get("code") or ""),
                    }
                )
            elif res.get("valueString") or _concept(res.get("valueCodeableConcept")):
                value = res.get("valueString") or _concept(res.get("valueCodeableConcept"))
                fields["labs"].append({"name": _concept(res["code"]), "value": str(value)})
            if "pregnan" in _concept(res["code"]).lower() and isinstance(
                res.get("valueBoolean"), bool
            ):
                fields["pregnant"] = res["valueBoolean"]
    for key in ("conditions", "medications", "allergies"):
        fields[key] = list(dict.fromkeys(fields[key]))
    return Patient.model_validate(fields)
