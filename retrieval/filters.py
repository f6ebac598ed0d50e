"""Search filters: what a clinician or an app can narrow the evidence by.

:class:`SearchFilters` is validated (unknown fields are an error that names them) and turned
into store clauses that Qdrant evaluates with its payload indexes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retrieval.errors import InputError
from retrieval.stores.base import AnyOf, Clause, Condition, Not
from retrieval.types import EvidenceLevel, Source, parse_grade

MAX_VALUES = 50  # values in one filter list
Term = Annotated[str, Field(min_length=1, max_length=200)]


class SearchFilters(BaseModel):
    """Restrictions applied inside the vector search (not after it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    year_from: int | None = Field(None, ge=1800, le=2200, description="Published in or after.")
    year_to: int | None = Field(None, ge=1800, le=2200, description="Published in or before.")
    evidence_levels: tuple[EvidenceLevel, ...] = Field(
        (),
        max_length=MAX_VALUES,
        description="Only these evidence levels (e.g. practice_guideline, systematic_review).",
    )
    publication_types: tuple[Term, ...] = Field(
        (),
        max_length=MAX_VALUES,
        description="Only documents with one of these PubMed publication types.",
    )
    sources: tuple[Source, ...] = Field(
        (), max_length=MAX_VALUES, description="Only these corpora (pubmed, pmc, ...)."
    )
    bodies: tuple[Term, ...] = Field(
        (), max_length=MAX_VALUES, description="Only guidelines from these bodies (e.g. USPSTF)."
    )
    languages: tuple[Term, ...] = Field(
        (),
        max_length=MAX_VALUES,
        description="Only these languages: MEDLINE codes ('eng', 'chi') or names and short "
        "codes ('en', 'zh', 'Chinese'), stored as the codes.",
    )
    mesh_terms: tuple[Term, ...] = Field(
        (), max_length=MAX_VALUES, description="Only documents with one of these MeSH terms."
    )
    patient_age: float | None = Field(
        None, ge=0, le=130, description="Drop guidelines whose age range excludes this age."
    )
    patient_sex: Literal["female", "male"] | None = Field(
        None, description="Drop guidelines meant for the other sex only."
    )
    exclude_retracted: bool = Field(
        False, description="Drop retracted records (PubMed's 'Retracted Publication')."
    )
    grades: tuple[Term, ...] = Field(
        (),
        max_length=MAX_VALUES,
        description="Only guidelines with one of these recommendation grades (USPSTF A, B, C, "
        "D, I; GRADE strong, conditional, weak); other evidence is dropped too.",
    )

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from retrieval.language import normalize_code

        return tuple(dict.fromkeys(normalize_code(v) for v in value))

    @field_validator("grades")
    @classmethod
    def _known_grades(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(parse_grade(g) for g in value))

    @model_validator(mode="after")
    def _years_in_order(self) -> SearchFilters:
        if self.year_from and self.year_to and self.year_from > self.year_to:
            raise InputError(f"year_from {self.year_from} is after year_to {self.year_to}")
        return self

    def clauses(self) -> list[Clause]:
        """Store clauses; every one must hold.

        >>> [c.key for c in SearchFilters(year_from=2015, sources=("pubmed",)).clauses()]
        ['year', 'source']
        """
        out: list[Clause] = []
        if self.year_from is not None or self.year_to is not None:
            out.append(Condition("year", gte=self.year_from, lte=self.year_to))
        for key, values in (
            ("evidence_level", tuple(v.value for v in self.evidence_levels)),
            ("publication_types", self.publication_types),
            ("source", tuple(v.value for v in self.sources)),
            ("extra.body", self.bodies),
            ("language", self.languages),
            ("mesh_terms", self.mesh_terms),
            ("extra.grade", self.grades),
        ):
            if values:
                out.append(Condition(key, any=tuple(values)))
        if self.exclude_retracted:
            out.append(Not(Condition("status", any=("retracted",))))
        patient: list[Clause] = []
        if self.patient_age is not None:
            patient.append(Condition("applies_age_min", lte=self.patient_age))
            patient.append(Condition("applies_age_max", gte=self.patient_age))
        if self.patient_sex is not None:
            patient.append(Condition("applies_sex", any=(self.patient_sex, "all")))
        if patient:
            # Patient context narrows guidelines only; other evidence stays.
            from retrieval.stores.base import AllOf

            is_guideline = Condition("source", any=(Source.GUIDELINE.value,))
            out.append(AnyOf((Not(is_guideline), AllOf(tuple(patient)))))
        return out
