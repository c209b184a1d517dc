"""MAGI-1's caption cleaning (the DeepFloyd-IF recipe its T5 was trained with), applied twice per prompt.

Same steps in the same order as the official ``T5Embedder.clean_caption``; HTML tags are stripped with the
standard library's parser instead of BeautifulSoup (same text for prompts), ``ftfy`` fixes mojibake.
"""

from __future__ import annotations

import html
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


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment (entities decoded), like BeautifulSoup's ``.text``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _strip_html(text: str) -> str:
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
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
