"""Answer extraction: the final answer a generation states, for a named answer format.

Every function here is bounded in time: only the last :data:`MAX_SCAN` characters of a
generation are searched (a final answer sits at the end), every regex is linear, and a boxed
answer longer than :data:`MAX_ANSWER` characters is not an answer.

Formats (:data:`ANSWER_FORMATS`):

- ``gsm8k``: the text after the last ``####``; else ``answer_is``; else ``last_number``.
- ``boxed``: the last ``\\boxed{...}`` (or ``\\fbox{...}``). Boxes written one after another,
  separated only by commas, "and"/"or", ``x =`` or math delimiters (``\\boxed{2}, \\boxed{3}``),
  form one answer, a set: it is graded like ``\\boxed{2, 3}``, as an unordered list against
  the reference's items. An earlier box followed by prose is ignored.
- ``answer_is``: what follows the last "answer is" / "answer:" (case-insensitive), to the end
  of its sentence; a box inside it is unwrapped.
- ``last_number``: the last number (``-3``, ``2.5``, ``1,234``, ``3/4``, ``50%``,
  ``\\frac{3}{4}``).
- ``auto``: ``boxed``, then ``####``, then ``answer_is``, then ``last_number``.
- ``exact``: the whole generation, stripped (the synthetic lab tasks).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

MAX_SCAN = 32_768
MAX_ANSWER = 1_000

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE = re.compile(r"(?<!\\)[{}]")
_BOX_BARE = re.compile(r"\s+([^\s$]{1,100})")
# what may separate the boxes of one multi-box answer
_GROUP_SEP = re.compile(
    r"(?:\s|[,;&$]|\\[,;:! ]|\\q?quad|\\\\|\\[\[\]()]|\b(?:and|or)\b|\\text\{\s*(?:and|or|,)?\s*\}"
    r"|[A-Za-z](?:_\{?\d\}?)?\s*=)*")
_MAX_GROUP = 16
_ANSWER_IS = re.compile(r"(?i)\banswer\s{0,3}(?:is\s{0,3}:?|:)")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])[-\u2212])?(?:\\[dt]?frac\{\d{1,100}\}\{\d{1,100}\}"
    r"|(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d{1,100})(?:\.\d{1,100})?(?:/\d{1,100})?(?:\s?\\?%)?)")


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    found = deque(pattern.finditer(text), maxlen=1)
    return found[0] if found else None


def _box_at(text: str, start: int, end: int) -> tuple[str, int] | None:
    """The content of the box whose command ends at ``end``, and where the box ends."""
    if end < len(text) and text[end] == "{":
        depth = 0
        for m in _BRACE.finditer(text, end, min(len(text), end + MAX_ANSWER + 2)):
            depth += 1 if m.group() == "{" else -1
            if depth == 0:
                return text[end + 1:m.start()].strip(), m.end()
        return None
    m = _BOX_BARE.match(text, end)  # "\boxed 5"
    return (m.group(1), m.end()) if m else None


def boxed(text: str) -> tuple[str, ...]:
    """The last box, with the boxes written just before it in the same list (see module doc)."""
    tail = text[-MAX_SCAN:]
    spans = [(m.start(), m.end()) for m in _BOX.finditer(tail)][-4 * _MAX_GROUP:]
    group: list[str] = []
    group_start = None
    for start, end in reversed(spans):
        found = _box_at(tail, start, end)
        if found is None or not found[0]:
            if group:
                break
            continue
        content, stop = found
        if group:
            between = tail[stop:group_start]
            if stop > group_start or len(between) > 60 or not _GROUP_SEP.fullmatch(between):
                break
        group.append(content)
        group_start = start
        if len(group) == _MAX_GROUP:
            break
    return tuple(reversed(group))


def _clean(answer: str) -> str:
    return answer.strip().strip("*").strip()


def after_hashes(text: str) -> tuple[str, ...]:
    """The rest of the line after the last ``####`` (GSM8K's answer marker)."""
    tail = text[-MAX_SCAN:]
    at = tail.rfind("####")
    if at < 0:
        return ()
    line = tail[at + 4:].lstrip("# ").split("\n", 1)[0][:MAX_ANSWER]
    answer = _clean(line)
    return (answer,) if answer else ()


def answer_is(text: str) -> tuple[str, ...]:
    """What follows the last "answer is" or "answer:", to the end of its sentence."""
    tail = text[-MAX_SCAN:]
    last = _last(_ANSWER_IS, tail)
    if last is None:
        return ()
    rest = tail[last.end():last.end() + MAX_ANSWER].lstrip()
    rest = rest.split("\n", 1)[0]
    if _BOX.search(rest):
        return boxed(rest)
    end = _SENTENCE_END.search(rest)
    answer = _clean(rest[:end.start()] if end else rest)
    return (answer,) if answer else ()


def last_number(text: str) -> tuple[str, ...]:
    """The last number in the text, as written (``1,234``, ``-3``, ``3/4``, ``50%``)."""
    last = _last(_NUMBER, text[-MAX_SCAN:])
    return (last.group().replace("\u2212", "-"),) if last else ()


def exact(text: str) -> tuple[str, ...]:
    """The whole generation, stripped."""
    answer = text.strip()
    return (answer,) if answer else ()


def _first(*extractors: Callable[[str], tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    def extract(text: str) -> tuple[str, ...]:
        for extractor in extractors:
            found = extractor(text)
            if found:
                return found
        return ()
    return extract


EXTRACTORS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "auto": _first(boxed, after_hashes, answer_is, last_number),
    "gsm8k": _first(after_hashes, answer_is, last_number),
    "boxed": boxed,
    "answer_is": answer_is,
    "last_number": last_number,
    "exact": exact,
}
ANSWER_FORMATS = tuple(EXTRACTORS)


def reference_answer(reference: str) -> str:
    """The answer in a reference: its last box or ``####`` answer (a worked solution, as in
    MATH or GSM8K), else the whole reference, stripped."""
    found = boxed(reference) if _BOX.search(reference) else ()
    if not found and "####" in reference:
        found = after_hashes(reference)
    return ", ".join(found) if found else reference.strip()
