"""MAGI-1's caption cleaning (the DeepFloyd-IF recipe its T5 was trained with), applied twice per prompt.

Same steps in the same order as the official ``T5Embedder.clean_caption``; the HTML text is taken with the
standard library's parser following BeautifulSoup's ``.text`` (what the official uses, with ``html.parser``):
script, style, template, rt and rp contents dropped, CDATA kept. ``ftfy`` fixes mojibake.
"""

from __future__ import annotations

import html
import html.entities
import re
import urllib.parse
from html.parser import HTMLParser

import ftfy

_URL_TLDS = r"(?:com|co|ru|net|org|edu|gov|it)"
_FILE_EXTS = r"(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)"
_DASHES = (
    "\u002d\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0"
    "\ufe31\ufe32\ufe58\ufe63\uff0d"
)
_CJK = "\u31c0-\u31ef\u31f0-\u31ff\u3200-\u32ff\u3300-\u33ff\u3400-\u4dbf\u4dc0-\u4dff\u4e00-\u9fff"

_BEFORE_HTML = (
    (r"<person>", "person"),
    (rf"\b((?:https?:(?:\/{{1,3}}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.]{_URL_TLDS}[\w/-]*\b\/?(?!@)))", ""),
    (rf"\b((?:www:(?:\/{{1,3}}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.]{_URL_TLDS}[\w/-]*\b\/?(?!@)))", ""),
)
_AFTER_HTML = (
    (r"@[\w\d]+\b", ""),
    (f"[{_CJK}]+", ""),
    (f"[{_DASHES}]+", "-"),
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),
    (r"\d:\d\d\s+$", ""),
    (r"\\n", " "),
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (rf"[\S]+\.{_FILE_EXTS}", ""),
    (r"[\"\']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (r"[#®•©™&@·º½¾¿¡§~)(\]\[}{|\\/*]+", " "),
    (r"\s+\.\s+", " "),
)
_AFTER_BASIC = (
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),
    (r"\b\d+[a-zA-Z]+\d+\b", ""),
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (rf"\b{_FILE_EXTS}(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),
    (r"^[\'\_,\-\:;]", ""),
    (r"[\'\_,\-\:\-\+]$", ""),
    (r"^\.\S+$", ""),
)
_SEPARATORS = re.compile(r"(?:\-|\_)")


# How BeautifulSoup's ``.text`` (html.parser builder) reads a fragment: strings inside these tags are its
# Script, Stylesheet, TemplateString, RubyTextString and RubyParenthesisString, left out of ``.text``;
# void elements close at once (bs4's quirks of ``<br/>`` and ``</br>`` included); a string of ASCII
# whitespace only becomes one space (or a newline) outside pre / textarea.
_HIDDEN = frozenset({"script", "style", "template", "rt", "rp"})
_PRESERVE = frozenset({"pre", "textarea"})
_VOID = frozenset(
    "area base br col embed hr img input keygen link menuitem meta param source track wbr basefont bgsound "
    "command frame image isindex nextid spacer".split()
)
_ASCII_SPACES = " \n\t\x0c\r"


class _VisibleText(HTMLParser):
    """Collects an HTML fragment's text as BeautifulSoup's ``.text`` gives it with ``html.parser``.

    Data between two markup events is one string; its tag context decides whether it is kept. Comments,
    declarations and processing instructions are dropped, CDATA sections kept (even in hidden tags), entity
    and character references decoded the way bs4 does.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.parts: list[str] = []
        self.open: list[str] = []
        self.closed_void: list[str] = []
        self.pending: list[str] = []

    def end_string(self, kept: bool | None = None) -> None:
        """Close the string collected since the last markup event (bs4's ``endData``)."""
        if not self.pending:
            return
        text, self.pending = "".join(self.pending), []
        if not text.strip(_ASCII_SPACES) and _PRESERVE.isdisjoint(self.open):
            text = "\n" if "\n" in text else " "
        if _HIDDEN.isdisjoint(self.open) if kept is None else kept:
            self.parts.append(text)

    def handle_starttag(self, tag: str, attrs: list, close_void: bool = True) -> None:
        self.end_string()
        self.open.append(tag)
        if tag in _VOID and close_void:  # closed at once; a later </tag> only cancels this (bs4)
            self._close(tag)
            self.closed_void.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs, close_void=False)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.closed_void:
            self.closed_void.remove(tag)
        else:
            self._close(tag)

    def _close(self, tag: str) -> None:
        """End the string and close ``tag`` with every tag opened after it (bs4's ``_popToTag``)."""
        self.end_string()
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        self.pending.append(data)

    def handle_comment(self, data: str) -> None:
        self.end_string()

    def handle_decl(self, decl: str) -> None:
        self.end_string()

    def handle_pi(self, data: str) -> None:
        self.end_string()

    def unknown_decl(self, data: str) -> None:
        self.end_string()
        if data[:6].upper() == "CDATA[":
            self.pending.append(data[6:])
            self.end_string(kept=True)

    def handle_entityref(self, name: str) -> None:
        entity = html.entities.html5.get(f"{name};") or html.entities.html5.get(name)
        self.handle_data(entity if entity is not None else f"&{name}")

    def handle_charref(self, name: str) -> None:
        self.handle_data(_charref(name))


def _charref(name: str) -> str:
    """bs4's reading of ``&#name;``: code points under 256 as Windows-1252 where it defines them."""
    code = int(name[1:], 16) if name[:1] in "xX" else int(name)
    if code < 256:
        try:
            return bytes([code]).decode("windows-1252")
        except UnicodeDecodeError:
            pass
    try:
        return chr(code)
    except (ValueError, OverflowError):
        return "\N{REPLACEMENT CHARACTER}"


def _strip_html(text: str) -> str:
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    parser.end_string()
    return "".join(parser.parts)


def _apply(text: str, steps: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in steps:
        text = re.sub(pattern, replacement, text)
    return text


def clean_once(caption: str) -> str:
    """One pass of the official ``clean_caption``."""
    text = urllib.parse.unquote_plus(str(caption)).strip().lower()
    text = _strip_html(_apply(text, _BEFORE_HTML))
    text = _apply(text, _AFTER_HTML)
    if len(_SEPARATORS.findall(text)) > 3:
        text = _SEPARATORS.sub(" ", text)
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _apply(text, _AFTER_BASIC).strip()


def clean_caption(caption: str) -> str:
    """The official text preprocessing: ``clean_caption`` applied twice."""
    return clean_once(clean_once(caption))
