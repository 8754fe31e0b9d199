"""A survey's results as tables for CSV and XLSX (`patron.reports.export`): CSV keeps code
keys for programs; XLSX gets the headers in the reader's language."""

from __future__ import annotations

from patron.reports.export import Table, Tables
from patron.surveys.schemas import ResultsOut, TextAnswer

HEADERS: dict[str, tuple[str, str, str]] = {  # code: (en, ko, zh)
    "question": ("Question", "질문", "问题"),
    "kind": ("Kind", "유형", "类型"),
    "answer": ("Answer", "응답", "回答"),
    "count": ("Count", "건수", "数量"),
    "average": ("Average rating", "평균 평점", "平均评分"),
    "store": ("Store", "매장", "门店"),
    "responses": ("Responses", "응답 수", "回复数"),
    "answered_at": ("Answered at (UTC)", "응답 시각(UTC)", "回答时间（UTC）"),
    "text": ("Text", "내용", "内容"),
    "summary": ("Summary", "요약", "汇总"),
    "by_store": ("By store", "매장별", "按门店"),
    "texts": ("Free text", "자유 응답", "文字回答"),
}


def _h(code: str, language: str | None) -> str:
    if language is None:
        return code
    return HEADERS[code][("en", "ko", "zh").index(language) if language in ("ko", "zh") else 0]


def tables(
    program: str,
    currency: str,
    report: ResultsOut,
    texts: list[TextAnswer],
    *,
    language: str | None = None,
) -> Tables:
    """`language` None: code headers (CSV); else headers in that language (XLSX)."""
    summary = Table(
        _h("summary", language),
        [_h(c, language) for c in ("question", "kind", "answer", "count", "average")],
    )
    for q in report.questions:
        summary.rows.append([q.label, q.kind, "", q.answers, q.average])
        for d in q.distribution:
            summary.rows.append([q.label, q.kind, d.label, d.count, None])
    by_store = Table(
        _h("by_store", language), [_h(c, language) for c in ("store", "responses", "average")]
    )
    for s in report.stores:
        by_store.rows.append([s.store or "", s.responses, s.average_rating])
    free = Table(
        _h("texts", language),
        [_h(c, language) for c in ("answered_at", "store", "question", "text")],
    )
    for t in texts:
        free.rows.append([t.answered_at, t.store or "", t.question, t.text])
    return Tables(
        name=f"survey-{report.survey}", currency=currency, tables=[summary, by_store, free],
        program=program,
    )  # fmt: skip
