"""The gallery page: a static HTML file of image cards with a filter by class and kind.

Everything the page needs is in it (styles and a few lines of script) or next to it (the
card PNGs, in a folder beside the page): it opens from disk with no server and no network.

Filter: a card shows when it has the chosen class (any class of its objects or predictions)
and the chosen kind, and with both chosen, when it has an error of that kind involving that
class (its ``tags``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PAGE = "gallery.html"
IMAGE_FOLDER = "gallery"


@dataclass
class Card:
    """One image on the page.

    Attributes:
        image: the PNG, relative to the page.
        title: the image's name.
        lines: caption lines (plain text).
        classes: class names in the image (the class filter).
        tags: ``(kind, class name)`` pairs (the kind filter, and both filters together).
        chips: ``(name, RGB)`` colour keys shown under the caption (label-map classes).
    """

    image: str
    title: str
    lines: Sequence[str] = ()
    classes: Sequence[str] = ()
    tags: Sequence[tuple[str, str]] = ()
    chips: Sequence[tuple[str, tuple[int, int, int]]] = ()


@dataclass
class Page:
    """What the page says around its cards.

    Attributes:
        title: of the page.
        intro: paragraphs (plain text) above the filter.
        kinds: ``{kind: label}`` the kind filter offers, in order.
        legend: ``(label, RGB)`` of what the colours in the pictures mean.
        classes: the class filter's choices, in order.
        notes: lines listed above the cards (e.g. the data doctor's findings).
        links: ``(href, text)`` links to the other pages of the report.
    """

    title: str
    intro: Sequence[str] = ()
    kinds: dict[str, str] = field(default_factory=dict)
    legend: Sequence[tuple[str, tuple[int, int, int]]] = ()
    classes: Sequence[str] = ()
    notes: Sequence[str] = ()
    links: Sequence[tuple[str, str]] = ()


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
.bar{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
.bar label{margin-right:1em}.chip{display:inline-block;width:.9em;height:.9em;vertical-align:middle;
margin:0 .25em 0 .8em;border:1px solid #888}.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:1em}
.card{border:1px solid #ccc;border-radius:4px;padding:6px;max-width:calc(100% - 14px)}.card[hidden]{display:none}
.card img{display:block;max-width:100%}.card h3{font-size:.95em;margin:.2em 0}
.card p{font-size:.85em;margin:.15em 0}.notes{font-size:.9em}"""

SCRIPT = """(function(){
const cards=Array.from(document.querySelectorAll('.card'));
const cls=document.getElementById('class-filter'),kind=document.getElementById('kind-filter');
const shown=document.getElementById('shown');
function apply(){
  const c=cls.value,k=kind.value;let n=0;
  for(const card of cards){
    const classes=JSON.parse(card.dataset.classes),tags=JSON.parse(card.dataset.tags);
    let ok=true;
    if(c&&k){ok=tags.some(t=>t[0]===k&&t[1]===c);}
    else if(c){ok=classes.includes(c);}
    else if(k){ok=tags.some(t=>t[0]===k);}
    card.hidden=!ok;if(ok){n+=1;}
  }
  shown.textContent=n+' of '+cards.length+' images shown';
}
cls.addEventListener('change',apply);kind.addEventListener('change',apply);apply();
})();"""


def _rgb(colour: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def _chips(items: Sequence[tuple[str, tuple[int, int, int]]]) -> str:
    return "".join(f'<span class="chip" style="background:{_rgb(colour)}"></span>{html.escape(name)}'
                   for name, colour in items)


def _options(choices: Sequence[tuple[str, str]], everything: str) -> str:
    return f'<option value="">{html.escape(everything)}</option>' + "".join(
        f'<option value="{html.escape(value)}">{html.escape(label)}</option>' for value, label in choices)


def _card(card: Card) -> str:
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in card.lines)
    chips = f"<p>{_chips(card.chips)}</p>" if card.chips else ""
    classes = html.escape(json.dumps(list(card.classes)))
    tags = html.escape(json.dumps([list(t) for t in card.tags]))
    return (f'<div class="card" data-classes="{classes}" data-tags="{tags}">'
            f'<h3>{html.escape(card.title)}</h3><img src="{html.escape(card.image)}" alt="{html.escape(card.title)}">'
            f"{lines}{chips}</div>")


def write_gallery_page(path: str | Path, page: Page, cards: Sequence[Card]) -> Path:
    """Write the page to ``path`` (its card PNGs must already be where ``Card.image`` says)."""
    path = Path(path)
    links = " | ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in page.links)
    intro = "".join(f"<p>{html.escape(p)}</p>" for p in page.intro)
    notes = ("<ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in page.notes) + "</ul>"
             if page.notes else "")
    empty = "" if cards else "<p>No images to show.</p>"
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(page.title)}</title>
<link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body>{f"<p>{links}</p>" if links else ""}<h1>{html.escape(page.title)}</h1>{intro}
<p>{_chips(page.legend)}</p>{notes}
<div class="bar"><label>class <select id="class-filter">{_options([(c, c) for c in page.classes], "all classes")}</select></label>
<label>kind <select id="kind-filter">{_options(list(page.kinds.items()), "all kinds")}</select></label>
<span id="shown"></span></div>
<div class="cards">{"".join(_card(card) for card in cards)}</div>{empty}
<script>{SCRIPT}</script>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document)
    return path
