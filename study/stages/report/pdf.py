"""The paper as a PDF: `paper.md`, the one text the report generates, rendered by Typst (the
`typst` package from PyPI, which bundles the compiler and its fonts; no system install).

`to_typst` translates the Markdown the report writes (headings, paragraphs with bold, italics
and code, bullet lists, pipe tables, images alone on a line, indented code blocks) into Typst
markup; every piece of text goes in as a Typst string (`#"..."`), so no character of the paper
can be read as Typst syntax. `write_pdf` compiles it beside `paper.md` with no date in the
document, so that the same paper gives the same bytes. Tables wider than `WIDE` columns (the
full table of appendix A) go on landscape pages in a smaller type.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from study.core.files import write_bytes_atomic
from study.core.store import PaperFiles

WIDE = 8  # columns from which a table gets a landscape page
TEXT_MM = (170, 247)  # the text area of an A4 page with the margins below, width x height
MAX_FIGURE_MM = 200  # the tallest a figure may be drawn, leaving room for its caption
APPENDIX = "## Appendix"

_PREAMBLE = """#set document(title: {title}, date: none)
#set page(paper: "a4", margin: (x: 20mm, y: 25mm), numbering: "1")
#set text(size: 10pt)
#set par(justify: true)
#set heading(numbering: none)
#show heading.where(level: 1): set text(size: 16pt)
#show heading.where(level: 2): set text(size: 13pt)
#show heading.where(level: 3): set text(size: 11pt)
#show figure.caption: set text(size: 9pt)
#context [#metadata(counter(page).final().first()) <pages>]
"""
_INLINE = re.compile(
    r"\*\*(?P<bold>.+?)\*\*|`(?P<code>[^`]+)`|(?<![\w*])\*(?P<em>[^*\s][^*]*?)\*(?![\w*])"
    r"|\[(?P<link>[^\]]+)\]\((?P<url>[^)\s]+)\)"
)
_IMAGE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\((?P<path>[^)\s]+)\)$")


def _str(text: str) -> str:
    """Text as a Typst string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inline(text: str) -> str:
    """A line of Markdown text as Typst markup: bold, italics, code and links; the rest as strings."""
    out, at = [], 0
    for m in _INLINE.finditer(text):
        if m.start() > at:
            out.append(f"#{_str(text[at : m.start()])}")
        if m["bold"] is not None:
            out.append(f"#strong[{inline(m['bold'])}]")
        elif m["code"] is not None:
            out.append(f"#raw({_str(m['code'])})")
        elif m["em"] is not None:
            out.append(f"#emph[{inline(m['em'])}]")
        else:
            out.append(f"#link({_str(m['url'])})[{inline(m['link'])}]")
        at = m.end()
    if at < len(text):
        out.append(f"#{_str(text[at:])}")
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    """A pipe table (header, alignment row, body) as a Typst table."""
    head, rule, body = _cells(lines[0]), _cells(lines[1]), [_cells(x) for x in lines[2:]]
    align = ", ".join("right" if r.endswith(":") else "left" for r in rule)
    size = "8pt" if len(head) <= 4 else "7pt" if len(head) <= WIDE else "5pt"
    cells = [f"table.header({', '.join(f'[{inline(c)}]' for c in head)})"]
    cells += [f"[{inline(c)}]" for row in body for c in row + [""] * (len(head) - len(row))]
    table = (
        f"#text(size: {size})[#table(columns: {len(head)}, align: ({align},), inset: 3pt, stroke: 0.4pt + gray,\n  "
        + ",\n  ".join(cells)
        + ")]"
    )
    return f"#page(flipped: true)[\n{table}\n]" if len(head) > WIDE else table


def _figure(caption: str, path: str, root: Path) -> str:
    """An image alone on a line, as a figure no wider than the text and no taller than MAX_FIGURE_MM."""
    with Image.open(root / path) as im:
        w, h = im.size
    width = min(TEXT_MM[0], MAX_FIGURE_MM * w / h)
    return f"#figure(image({_str(path)}, width: {width:.1f}mm), caption: [{inline(caption)}])"


def to_typst(markdown: str, root: Path) -> str:
    """The Markdown of `paper.md` as a Typst document; images are read from `root` for their size."""
    title = next((x[2:] for x in markdown.splitlines() if x.startswith("# ")), "")
    out = [_PREAMBLE.format(title=_str(title))]
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = line[level:].strip()
            if line.startswith(APPENDIX) and not any(x.startswith(APPENDIX) for x in lines[:i]):
                out.append("#pagebreak()\n#context [#metadata(here().page()) <appendix>]")
            out.append("=" * level + " " + inline(text))
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif _IMAGE.match(line.strip()):
            m = _IMAGE.match(line.strip())
            out.append(_figure(m["caption"], m["path"], root))
            i += 1
        elif line.startswith("    "):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            code = "\n".join(x[4:] for x in lines[i:j]).strip("\n")
            out.append(f"#block(inset: (left: 1em))[#raw({_str(code)}, block: true)]")
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and (lines[i].startswith("- ") or (lines[i].startswith("  ") and items)):
                if lines[i].startswith("- "):
                    items.append(lines[i][2:].strip())
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("\n".join(f"- {inline(x)}" for x in items))
        else:
            j = i
            while (
                j < len(lines)
                and lines[j].strip()
                and not lines[j].startswith(("#", "|", "- ", "    "))
                and not _IMAGE.match(lines[j].strip())
            ):
                j += 1
            out.append(inline(" ".join(x.strip() for x in lines[i:j])))
            i = j
    return "\n\n".join(out) + "\n"


def write_pdf(paper: PaperFiles | Path) -> Path:
    """paper.pdf from paper.md and its figures, in the paper's folder."""
    import typst

    paper = paper if isinstance(paper, PaperFiles) else PaperFiles(Path(paper))
    source = to_typst(paper.md.read_text(), paper.root).encode()
    pdf = typst.compile(source, root=str(paper.root), ignore_system_fonts=True)
    write_bytes_atomic(paper.pdf, pdf)
    return paper.pdf


def pdf_facts(paper_dir: Path) -> dict:
    """What the PDF holds, asked of the same Typst source: its pages, the page its appendix
    starts on (None without one) and the images it draws."""
    import typst

    paper_dir = Path(paper_dir)
    source = to_typst(PaperFiles(paper_dir).md.read_text(), paper_dir).encode()

    def ask(sel, field):
        return json.loads(typst.query(source, sel, field=field, root=str(paper_dir), ignore_system_fonts=True))

    appendix = ask("<appendix>", "value")
    return {
        "pages": ask("<pages>", "value")[0],
        "appendix_page": appendix[0] if appendix else None,
        "images": ask("image", "source"),
    }
