"""The PDF: title and what was compared, setup, findings, tables as real text, figures, failures.

Laid out with ReportLab's platypus (flowing paragraphs and tables that break across pages), on
landscape A4 so that a comparison table fits across the page. DejaVu Sans (shipped with
matplotlib) is embedded so that ±, ↑, ↓, † and ‡ print and can be searched and copied.
"""
from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (CondPageBreak, Image, PageBreak, Paragraph, SimpleDocTemplate,
                                Spacer, Table, TableStyle)

from harness.report.tables import Table as ReportTable

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
PAGE = landscape(A4)
MARGIN = 1.5 * cm


def _fonts() -> None:
    if "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", str(FONT_DIR / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVu-Bold", str(FONT_DIR / "DejaVuSans-Bold.ttf")))
        pdfmetrics.registerFontFamily("DejaVu", normal="DejaVu", bold="DejaVu-Bold",
                                      italic="DejaVu", boldItalic="DejaVu-Bold")


def _styles() -> dict[str, ParagraphStyle]:
    _fonts()
    base = getSampleStyleSheet()
    s = {name: ParagraphStyle(name, parent=base[parent], fontName=font, fontSize=size,
                              leading=size * 1.25, **extra)
         for name, parent, font, size, extra in [
             ("title", "Title", "DejaVu-Bold", 20, {}),
             ("h1", "Heading1", "DejaVu-Bold", 14, {"spaceBefore": 8, "keepWithNext": 1}),
             ("h2", "Heading2", "DejaVu-Bold", 11, {"spaceBefore": 6, "keepWithNext": 1}),
             ("h3", "Heading3", "DejaVu-Bold", 9.5, {"spaceBefore": 4, "keepWithNext": 1}),
             ("body", "BodyText", "DejaVu", 9, {}),
             ("bullet", "BodyText", "DejaVu", 9, {"leftIndent": 12, "bulletIndent": 2}),
             ("note", "BodyText", "DejaVu", 7, {"textColor": colors.HexColor("#444444")}),
             ("cell", "BodyText", "DejaVu", 6.5, {"alignment": 2}),
             ("cell_left", "BodyText", "DejaVu", 6.5, {}),
             ("head", "BodyText", "DejaVu-Bold", 6.5, {"alignment": 2}),
         ]}
    return s


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def pdf_table(table: ReportTable, st: dict, first_col_cm: float = 3.2) -> list:
    """A report table as a ReportLab table of text: mean and ± std on two lines, best in bold."""
    def cell(c, col: int) -> Paragraph:
        text = escape(c.mean + c.mark) + (f"<br/>{escape(c.spread)}" if c.spread else "")
        text = f"<b>{text}</b>" if c.best else text
        return Paragraph(text, st["cell_left"] if col == 0 else st["cell"])

    heads = [Paragraph(escape(h), st["head"] if i else st["cell_left"]) for i, h in enumerate(table.headers)]
    data = [heads] + [[cell(c, i) for i, c in enumerate(row)] for row in table.rows]
    width = PAGE[0] - 2 * MARGIN
    ncol = len(table.headers)
    rest = (width - first_col_cm * cm) / (ncol - 1 + 0.4)  # the last column gets 1.4 shares
    widths = [first_col_cm * cm] + [rest] * (ncol - 2) + [rest * 1.4]
    t = Table(data, colWidths=widths, repeatRows=1)
    t.setStyle(TableStyle([
        ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
        ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.black),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f2f2")]),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]))
    return [_p(table.title, st["h2"]), t] + [_p(n, st["note"]) for n in table.notes] + [Spacer(1, 8)]


def key_value_table(rows: list[tuple[str, str]], st: dict) -> Table:
    t = Table([[_p(k, st["cell_left"]), _p(v, st["cell_left"])] for k, v in rows],
              colWidths=[5 * cm, PAGE[0] - 2 * MARGIN - 5 * cm])
    t.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
                           ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return t


def figure_grid(figures: list[tuple[Path, str]], st: dict, width: float) -> Table:
    """Figures two to a row, each with its caption under it; a wide figure takes a row alone."""
    half, max_h = width / 2 - 0.4 * cm, 6.4 * cm
    rows, spans, pending = [], [], []

    def cell(fig: Path, caption: str, cell_w: float) -> list:
        img = Image(str(fig))
        scale = min(cell_w / img.imageWidth, max_h / img.imageHeight)
        img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
        return [img, _p(caption, st["note"])]

    for fig, caption in figures:
        img = Image(str(fig))
        if img.imageWidth / img.imageHeight > 2.2:
            if pending:
                rows.append(pending + [""])
                pending = []
            rows.append([cell(fig, caption, width - 0.8 * cm), ""])
            spans.append(("SPAN", (0, len(rows) - 1), (1, len(rows) - 1)))
        else:
            pending.append(cell(fig, caption, half))
            if len(pending) == 2:
                rows.append(pending)
                pending = []
    if pending:
        rows.append(pending + [""])
    t = Table(rows, colWidths=[width / 2] * 2)
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                           ("BOTTOMPADDING", (0, 0), (-1, -1), 10), *spans]))
    return t


def _footer(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("DejaVu", 7)
    canvas.drawRightString(PAGE[0] - MARGIN, 0.8 * cm, f"page {doc.page}")
    canvas.restoreState()


def write_pdf(path: Path, title: str, subtitle: list[str], sections: list[tuple[str, list]]) -> Path:
    """``sections``: (heading, items); an item is a str (paragraph), ("bullets", [str]),
    ("kv", [(key, value)]), ("table", ReportTable), ("h2" or "h3", str), ("figures", [(path, caption)]),
    or "pagebreak"."""
    st = _styles()
    story = [_p(title, st["title"])] + [_p(line, st["body"]) for line in subtitle] + [Spacer(1, 10)]
    width = PAGE[0] - 2 * MARGIN
    for heading, items in sections:
        story += [CondPageBreak(6 * cm), _p(heading, st["h1"])]
        for item in items:
            if item == "pagebreak":
                story.append(PageBreak())
            elif isinstance(item, str):
                story.append(_p(item, st["body"]))
            elif item[0] in ("h2", "h3"):
                story.append(_p(item[1], st[item[0]]))
            elif item[0] == "bullets":
                story += [Paragraph(escape(b), st["bullet"], bulletText="•") for b in item[1]]
            elif item[0] == "kv":
                story.append(key_value_table(item[1], st))
            elif item[0] == "table":
                story += pdf_table(item[1], st)
            elif item[0] == "figures":
                story.append(figure_grid(item[1], st, width))
    doc = SimpleDocTemplate(str(path), pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN,
                            topMargin=MARGIN, bottomMargin=MARGIN, title=title,
                            author="peft-harness report")
    # Images as binary streams, not ASCII85 text: ReportLab encodes ASCII85 in pure Python where
    # its C accelerator is missing, a fifth of the PDF's time with a figure per table.
    a85, rl_config.useA85 = rl_config.useA85, 0
    try:
        doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    finally:
        rl_config.useA85 = a85
    return path
