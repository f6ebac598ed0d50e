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


def _bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in resources]}  # fmt: skip


def test_fhir_fields_of_the_wrong_type_are_errors_naming_resource_and_field() -> None:
    patient = BUNDLE["entry"][0]["resource"]
    with pytest.raises(PatientError, match=r"entry\[0\] \(Patient p1\): gender: Input should be"):
        load_patient(_bundle({**patient, "gender": 42}))
    lab = {"resourceType": "Observation", "code": {"text": "HbA1c"},
           "valueQuantity": {"value": "8.1", "unit": "%"}}  # fmt: skip
    with pytest.raises(PatientError, match=r"entry\[1\] \(Observation\): valueQuantity\.value"):
        load_patient(_bundle(patient, lab))
    with pytest.raises(PatientError, match=r"Bundle\.entry must be a list of entries, not str"):
        load_patient({"resourceType": "Bundle", "entry": "oops"})
    with pytest.raises(PatientError, match=r"entry\[0\] has no resource object"):
        load_patient({"resourceType": "Bundle", "entry": [42]})
    with pytest.raises(PatientError, match=r"entry\[0\].resource has no resourceType"):
        load_patient({"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]})
    with pytest.raises(PatientError, match=r"Condition c9\): code\.coding\.0\.display"):
        load_patient(_bundle({"resourceType": "Condition", "id": "c9",
                              "code": {"coding": [{"display": ["Diabetes"]}]}}))  # fmt: skip
    with pytest.raises(PatientError, match="birthDate: String should match"):
        load_patient(_bundle({**patient, "birthDate": "14/03/1956"}))
    with pytest.raises(PatientError, match="omitted: set by evidex"):
        load_patient({"age": 50, "omitted": ["x"]})
    # what evidex does not read is allowed: an Encounter, extensions, names
    ok = load_patient(_bundle({**patient, "extension": [{"url": "x"}]},
                              {"resourceType": "Encounter", "status": 7}))  # fmt: skip
    assert ok.sex == "female" and not ok.omitted


def test_a_huge_history_keeps_the_most_recent_and_says_so(tmp_path: Path) -> None:
    conditions = [
        {"resourceType": "Condition", "code": {"text": f"finding {i}"},
         "recordedDate": f"{2000 + i % 25}-{1 + i % 12:02d}-01"}
        for i in range(6000)
    ]  # fmt: skip
    labs = [
        {"resourceType": "Observation", "code": {"text": "eGFR"},
         "valueQuantity": {"value": v, "unit": "mL/min"}, "effectiveDateTime": d}
        for v, d in ((61, "2021-05-01"), (38, "2024-02-01"), (45, "2023-01-01"))
    ]  # fmt: skip
    f = tmp_path / "history.json"
    f.write_text(json.dumps(_bundle(BUNDLE["entry"][0]["resource"], *conditions, *labs)))
    p = load_patient(f)
    assert len(p.conditions) == 30
    assert p.omitted == ("Condition: the 30 most recent of 6,000 kept",)
    assert all(c.split()[-1] and int(c.split()[-1]) % 25 == 24 for c in p.conditions[:5])
    assert [(lab.name, lab.value) for lab in p.labs] == [("eGFR", 38)]  # the latest eGFR
    # too large a file is refused before it is read
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.write(json.dumps(_bundle()).encode())
        fh.truncate(10_500_000)
    with pytest.raises(PatientError, match=r"big\.json is 10\.5 MB; .* at most 10 MB"):
        load_patient(big)
    with pytest.raises(PatientError, match="characters; the limit is 100"):
        load_patient("{" + " " * 200 + "}", max_bytes=100)
