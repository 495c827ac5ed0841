"""The paper a reviewer reads (study.stages.report.prose, .pdf): it opens with an abstract and
the main findings, its paragraphs are short, no sentence lists more than three comparisons,
the full table is in an appendix, and the PDF holds the same text with every figure."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from smoke import layout
from study.stages.report.pdf import inline, pdf_facts, to_typst, write_pdf
from study.stages.report.prose import MAX_ABSTRACT_WORDS, MAX_COMPARISONS, MAX_WORDS

_COMPARISON = re.compile(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]")  # a paired difference with its interval


def paragraphs(markdown: str) -> list[str]:
    """The paper's prose: blocks between blank lines without tables, headings, images or code;
    each item of a list on its own."""
    out = []
    for block in re.split(r"\n\s*\n", markdown):
        lines = [x for x in block.splitlines() if x.strip()]
        if not lines or lines[0].startswith(("|", "#", "![", "    ")):
            continue
        if lines[0].startswith("- "):
            items = "\n".join(lines).split("\n- ")
            out += [x.removeprefix("- ") for x in items]
        else:
            out.append(" ".join(lines))
    return out


def sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z*(])", paragraph)


def words(text: str) -> int:
    return len(text.split())


def check_readable(markdown: str) -> None:
    main = markdown.split("## Appendix", 1)[0]
    head = main.split("\n\n")
    assert head[2].startswith("**Abstract.** ") and "**Main findings.**" in head[3], head[:4]
    assert words(head[2].removeprefix("**Abstract.** ")) <= MAX_ABSTRACT_WORDS
    for p in paragraphs(main):
        assert words(p) <= MAX_WORDS or p.startswith("**Abstract.** "), (words(p), p[:200])
        for s in sentences(p):
            assert len(_COMPARISON.findall(s)) <= MAX_COMPARISONS, s
    # the full table (every r, macro-F1) only in the appendix
    assert " / " not in "".join(x for x in main.splitlines() if x.startswith("|"))
    assert "## Appendix A. The full table" in markdown and "**Table 3.**" in main


@pytest.mark.slow
def test_the_smoke_paper_reads_in_fifteen_minutes(smoke):
    check_readable((layout(smoke)["paper"] / "paper.md").read_text())


def test_the_committed_paper_reads_in_fifteen_minutes():
    check_readable((REPO / "paper" / "paper.md").read_text())


@pytest.mark.slow
def test_the_pdf_is_the_paper_with_every_figure_and_the_same_bytes_again(smoke, tmp_path):
    paper = layout(smoke)["paper"]
    pdf = (paper / "paper.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    facts = pdf_facts(paper)
    figures = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", (paper / "paper.md").read_text(), re.M)
    assert figures and sorted(facts["images"]) == sorted(figures)
    assert (
        facts["appendix_page"] is not None
        and facts["appendix_page"] - 1 <= 12
        and facts["pages"] >= facts["appendix_page"]
    )
    assert write_pdf(paper).read_bytes() == pdf  # no date, nothing else that changes


def test_the_committed_pdf_has_at_most_twelve_pages_before_its_appendix():
    facts = pdf_facts(REPO / "paper")
    assert facts["appendix_page"] - 1 <= 12 and len(facts["images"]) >= 8
    assert (REPO / "paper" / "paper.pdf").read_bytes().startswith(b"%PDF")


def test_no_character_of_the_text_is_read_as_typst():
    """Everything goes in as Typst strings: markup characters, comments and backslashes stay text."""
    typ = inline('a // b #c $d$ *e* **f** `g_h` [i](j) <k> @l \\m "n"')
    assert typ.startswith('#"a // b #c $d$ "#emph[#"e"]') and '#strong[#"f"]' in typ and '#raw("g_h")' in typ
    assert '#link("j")[#"i"]' in typ and '"n\\""' in typ


def test_tables_lists_and_code_become_typst(tmp_path):
    md = (
        "# T\n\n*gen*\n\n## S\n\nA **b** paragraph\nover two lines.\n\n- one\n  more\n- two\n\n"
        "| a | b |\n|---|---:|\n| 1 | 2 |\n\n    pip install -e .\n\n## Appendix A. X\n\ntext\n"
    )
    typ = to_typst(md, tmp_path)
    assert '= #"T"' in typ and '== #"S"' in typ and '#"A "#strong[#"b"]#" paragraph over two lines."' in typ
    assert '- #"one more"\n- #"two"' in typ and "columns: 2, align: (left, right,)" in typ
    assert '#raw("pip install -e .", block: true)' in typ and typ.index("<appendix>") < typ.index('== #"Appendix A. X"')


@pytest.mark.slow
def test_report_rebuilds_the_committed_paper_byte_for_byte(tmp_path):
    """The paper of record, its PDF and its numbers are what `report` makes of the committed
    results, on any machine (the PDF has no date; Typst brings its own fonts)."""
    import shutil

    from study.stages.report import run_report

    out = tmp_path / "cpu"
    shutil.copytree(REPO / "results" / "cpu", out, ignore=shutil.ignore_patterns("score", "report.json"))
    run_report(out, tmp_path / "paper", echo=lambda s: None)
    for name in ("paper.md", "paper.pdf"):
        assert (tmp_path / "paper" / name).read_bytes() == (REPO / "paper" / name).read_bytes(), name
    assert (out / "paper_numbers.json").read_bytes() == (REPO / "results" / "cpu" / "paper_numbers.json").read_bytes()
