"""The pages' msgids and their catalogues: which msgids the templates and api/web's Python
use, and an update that adds the missing ones to every .po file (msgstr left empty for a
translator; the catalogue test fails until it is filled).

    python -m api.web.catalog          # add missing msgids to every catalogue
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract
from babel.messages.pofile import read_po, write_po
from jinja2.ext import babel_extract

from api.web.i18n import LANGUAGES, LOCALE_DIR

WEB = Path(__file__).resolve().parent
JINJA_KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}
# N_("…") marks a msgid; gettext(lang, "…") translates one at once.
PYTHON_KEYWORDS = {"N_": None, "gettext": (2,)}


def used_msgids() -> dict[str, str]:
    """msgid → where it is first used (file:line), over templates and Python."""
    found: dict[str, str] = {}

    def add(messages: object, where: str) -> None:
        for lineno, message, _, _ in messages:  # type: ignore[attr-defined]
            msgid = message if isinstance(message, str) else message[0]
            found.setdefault(msgid, f"{where}:{lineno}")

    for template in sorted((WEB / "templates").glob("*.html")):
        with template.open("rb") as f:
            add(extract(babel_extract, f, keywords=JINJA_KEYWORDS,
                        options={"extensions": "jinja2.ext.i18n"}), template.name)
    for module in sorted(WEB.glob("*.py")):
        with module.open("rb") as f:
            add(extract("python", f, keywords=PYTHON_KEYWORDS), module.name)
    return found


def po_path(lang: str) -> Path:
    return LOCALE_DIR / LANGUAGES[lang] / "LC_MESSAGES" / "messages.po"


def read_catalog(lang: str) -> Catalog:
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=LANGUAGES[lang])


def update() -> None:
    """Add every used msgid missing from a catalogue (English gets the msgid itself)."""
    used = used_msgids()
    for lang in LANGUAGES:
        catalog = read_catalog(lang)
        for msgid, where in used.items():
            if msgid not in catalog:
                catalog.add(msgid, msgid if lang == "en" else "", auto_comments=[where])
        with po_path(lang).open("wb") as f:
            write_po(f, catalog, width=100, omit_header=False)


if __name__ == "__main__":
    update()
    sys.exit(0)
