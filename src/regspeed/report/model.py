"""The report as data, built once from a study's data and analysis; the renderers
(:mod:`~regspeed.report.html`, :mod:`~regspeed.report.markdown`,
:mod:`~regspeed.report.terminal`) only read it."""

from __future__ import annotations

import dataclasses

from regspeed.analysis.compare import StudyAnalysis
from regspeed.report import text
from regspeed.study.results import StudyData


@dataclasses.dataclass(frozen=True)
class TextTable:
    """A table of text cells."""

    header: list[str]
    rows: list[list[str]]
    verdict_column: int | None  # the column whose cells are verdicts (coloured by them), if any


@dataclasses.dataclass(frozen=True)
class Figure:
    """A titled PNG with a caption; ``section`` says where the report shows it."""

    title: str
    caption: str
    png: bytes
    section: str = "evidence"  # "summary" (the answer's picture), "curves" (learning curves) or "evidence"


@dataclasses.dataclass(frozen=True)
class Animation:
    """A titled GIF (a trained run playing) with a caption."""

    title: str
    caption: str
    gif: bytes


@dataclasses.dataclass(frozen=True)
class ReportModel:
    """Everything a report says, in the order it says it."""

    question: str
    study: str  # the study's name
    answer: str  # the answer in a few plain sentences
    findings: list[str]  # how it was decided, then each comparison and diagnostic, one sentence each
    setup: list[str]
    verdict_title: str
    verdicts: TextTable  # one row per condition: its primary comparison
    per_metric: TextTable | None  # every metric with thresholds side by side; None with fewer than two
    comparisons: TextTable  # every comparison of the study
    figures: list[Figure]  # in report order; see Figure.section
    animations: list[Animation]
    caveats: list[str]
    spec_toml: str  # what reproduces the study
    generalization: TextTable | None = None  # a world with levels: training vs held-out levels at the end
    generalization_note: str | None = None  # what that table says, in a sentence


def build(
    data: StudyData,
    analysis: StudyAnalysis,
    figures: list[Figure],
    animations: list[Animation],
    gifs_left_out: tuple[str, ...] = (),
) -> ReportModel:
    """The report of a study from its data, its analysis and its rendered evidence (and the
    runs whose GIF was left out, their checkpoint missing or unreadable)."""
    header, rows = text.per_metric(analysis)
    return ReportModel(
        question=text.QUESTION,
        study=analysis.name,
        answer=text.answer(analysis),
        findings=[text.verdict_summary(analysis), *text.findings(analysis)],
        setup=text.setup_lines(data, analysis),
        verdict_title=text.verdict_title(analysis),
        verdicts=TextTable(text.VERDICT_HEADER, text.verdict_rows(analysis), verdict_column=1),
        per_metric=TextTable(header, rows, verdict_column=None) if len(header) > 2 else None,
        comparisons=TextTable(text.COMPARISON_HEADER, text.comparison_rows(analysis), verdict_column=3),
        generalization=TextTable(text.GENERALIZATION_HEADER, text.generalization_rows(analysis), verdict_column=None)
        if analysis.generalization
        else None,
        generalization_note=text.generalization_sentence(analysis),
        figures=figures,
        animations=animations,
        caveats=text.caveats(analysis, gifs_left_out),
        spec_toml=data.spec_toml.strip(),
    )


def figures_in(model: ReportModel, section: str) -> list[Figure]:
    """The model's figures shown in ``section``."""
    return [figure for figure in model.figures if figure.section == section]
