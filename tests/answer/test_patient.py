import datetime
import json
from pathlib import Path

import pytest

from answer.patient import Patient, PatientError, load_patient

BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female",
                      "birthDate": "1956-03-14", "name": [{"family": "Doe"}]}},
        {"resource": {"resourceType": "Condition",
                      "clinicalStatus": {"coding": [{"code": "active"}]},
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006",
                                           "display": "Type 2 diabetes mellitus"}]}}},
        {"resource": {"resourceType": "Condition",
                      "clinicalStatus": {"coding": [{"code": "resolved"}]},
                      "code": {"text": "Appendicitis"}}},
        {"resource": {"resourceType": "MedicationStatement", "status": "active",
                      "medicationCodeableConcept": {"text": "Metformin 1000 mg"}}},
        {"resource": {"resourceType": "MedicationStatement", "status": "stopped",
                      "medicationCodeableConcept": {"text": "Glibenclamide"}}},
        {"resource": {"resourceType": "AllergyIntolerance", "code": {"text": "Penicillin"}}},
        {"resource": {"resourceType": "Observation",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3",
                                           "display": "eGFR"}]},
                      "valueQuantity": {"value": 38, "unit": "mL/min/1.73m2"}}},
        {"resource": {"resourceType": "Observation", "code": {"text": "HbA1c"},
                      "valueQuantity": {"value": 8.1, "unit": "%"}}},
    ],
}  # fmt: skip


def test_fhir_bundle_becomes_a_patient(tmp_path: Path) -> None:
    f = tmp_path / "bundle.json"
    f.write_text(json.dumps(BUNDLE))
    p = load_patient(f)
    today = datetime.date.today()
    assert p.age == today.year - 1956 - ((today.month, today.day) < (3, 14))
    assert p.sex == "female"
    assert p.conditions == ("Type 2 diabetes mellitus",)  # resolved one left out
    assert p.medications == ("Metformin 1000 mg",)  # stopped one left out
    assert p.allergies == ("Penicillin",)
    assert [(lab.name, lab.value) for lab in p.labs] == [("eGFR", 38), ("HbA1c", 8.1)]
    s = p.summary()
    assert "female" in s and "eGFR 38 mL/min/1.73m2" in s and "Doe" not in s
    f2 = p.filters()
    assert f2.patient_sex == "female" and f2.patient_age == p.age


def test_plain_record_with_shorthands() -> None:
    p = load_patient('{"age": 8, "gender": "M", "conditions": "asthma", "labs": {"FEV1": "72%"}}')
    assert (p.age, p.sex, p.conditions) == (8, "male", ("asthma",))
    assert p.summary() == "8-year-old male. Conditions: asthma. Labs: FEV1 72%."


def test_errors_name_the_field_and_file(tmp_path: Path) -> None:
    with pytest.raises(PatientError, match="age"):
        load_patient({"age": 400})
    with pytest.raises(PatientError, match="weight"):
        load_patient({"weight": 70})
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(PatientError, match=r"p\.json is not valid JSON"):
        load_patient(bad)
    with pytest.raises(PatientError, match="Bundle"):
        load_patient({"resourceType": "Patient"})
    with pytest.raises(PatientError, match="cannot read"):
        load_patient(tmp_path / "missing.json")


def test_patient_data_stays_out_of_repr() -> None:
    p = Patient(age=70, conditions=("HIV infection",))
    assert "HIV" not in repr(p) and "HIV" not in str(p)
