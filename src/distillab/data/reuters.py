"""Reuters-21578 → R52, derived with our own code from the raw SGML distribution.

R52 is the standard single-label subset of Reuters-21578 (Cardoso-Cachopo 2007). We rebuild it from
the 22 ``reut2-0NN.sgm`` files rather than trusting a pre-made text dump, so every text and label is
traceable to the original corpus. The rules (``shared/data/reuters-r52/SOURCE.md``):

1. ModApte: ``TOPICS="YES"`` and ``LEWISSPLIT`` in {TRAIN, TEST}.
2. Exactly one ``<TOPICS><D>`` entry.
3. Keep topics with at least one train and one test document (52 remain).
4. Text = TITLE + "\\n" + BODY (title alone when there is no body); ``TYPE="UNPROC"`` documents use the
   whole ``<TEXT>``. The dateline is dropped. ``&#N;`` control markers and control characters are
   removed, SGML entities unescaped, whitespace runs collapsed to one space.

Row ids are ``r52-<NEWID>``: NEWID is the corpus's own document number, so ids never depend on our parse.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillab.data.dataset import TextDataset, TextSplit
from distillab.errors import InputError

SPLITS = ("train", "test")

_ATTR = re.compile(r'(\w+)="([^"]*)"')
_D = re.compile(r"<D>(.*?)</D>", re.DOTALL)
_CONTROL_MARKER = re.compile(r"&#\d+;")
# Control characters other than whitespace: whitespace must survive until it is collapsed,
# otherwise "in\nthe" would fuse into "inthe".
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class ReutersDoc:
    """One ModApte document with the fields R52 needs."""

    newid: int
    split: str  # "train" | "test" (LEWISSPLIT lower-cased)
    topics: tuple[str, ...]
    text_type: str  # "NORM" | "BRIEF" | "UNPROC"
    text: str


def clean(fragment: str) -> str:
    """Normalise one SGML text fragment: markers and control characters out, entities in, spaces collapsed."""
    if "&" in fragment:  # the checks skip work on most fragments; parsing all 22 files is dominated by this
        fragment = html.unescape(_CONTROL_MARKER.sub("", fragment))
    fragment = _CONTROL_CHARS.sub("", fragment)
    return " ".join(fragment.split())  # str.split() splits on the same Unicode whitespace as regex \s


def element(content: str, tag: str) -> tuple[str, str] | None:
    """(attributes, inner text) of the first ``<tag ...>...</tag>``; plain ``find`` is much faster than regexes here."""
    start = content.find(f"<{tag}")
    while start >= 0 and content[start + len(tag) + 1 : start + len(tag) + 2] not in (">", " "):
        start = content.find(f"<{tag}", start + 1)  # "<TEXT" must not match "<TEXTS"
    if start < 0:
        return None
    open_end = content.find(">", start)
    close = content.find(f"</{tag}>", open_end) if open_end >= 0 else -1
    if close < 0:
        return None
    return content[start + len(tag) + 1 : open_end], content[open_end + 1 : close]


def document_text(text_type: str, inner: str) -> str:
    """Text of one ``<TEXT>`` element by the R52 rule (title + newline + body; UNPROC: everything)."""
    if text_type == "UNPROC":
        return clean(inner)
    title = element(inner, "TITLE")
    body = element(inner, "BODY")
    title_text = clean(title[1]) if title else ""
    body_text = clean(body[1]) if body else ""
    return f"{title_text}\n{body_text}" if body_text else title_text


def parse_sgml(raw: str, source: str = "<string>") -> list[ReutersDoc]:
    """Every ModApte train/test document in one SGML file (others are skipped)."""
    docs = []
    for number, chunk in enumerate(raw.split("</REUTERS>")):
        start = chunk.find("<REUTERS ")
        if start < 0:
            continue  # the text after the last document
        header_end = chunk.index(">", start)
        attrs = dict(_ATTR.findall(chunk, start, header_end))
        split = attrs.get("LEWISSPLIT", "").lower()
        if attrs.get("TOPICS") != "YES" or split not in SPLITS:
            continue
        if "NEWID" not in attrs:
            raise InputError(f"{source}: document number {number + 1} in the file has no NEWID attribute")
        content = chunk[header_end + 1 :]
        topics = element(content, "TOPICS")
        text = element(content, "TEXT")
        if text is None:
            raise InputError(f"{source}: document NEWID={attrs['NEWID']} has no <TEXT> element")
        text_type = dict(_ATTR.findall(text[0])).get("TYPE", "NORM")
        docs.append(
            ReutersDoc(
                newid=int(attrs["NEWID"]),
                split=split,
                topics=tuple(_D.findall(topics[1])) if topics else (),
                text_type=text_type,
                text=document_text(text_type, text[1]),
            )
        )
    return docs


def read_sgml(path: str | Path) -> tuple[str, str]:
    """(decoded text, sha256 of the uncompressed bytes) of one ``.sgm`` or ``.sgm.gz`` file.

    The corpus is Latin-1 (one byte 0xFC in reut2-017); decoding as UTF-8 would fail there.
    The hash is of the uncompressed bytes so ``.sgm`` and ``.sgm.gz`` copies verify the same way.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read Reuters SGML ({exc})") from None
    return data.decode("latin-1"), hashlib.sha256(data).hexdigest()


def derive_r52(docs: list[ReutersDoc], name: str = "r52", source: dict | None = None) -> TextDataset:
    """Apply the single-topic and both-splits rules; classes are the 52 topics in alphabetical order."""
    single = sorted((doc for doc in docs if len(doc.topics) == 1), key=lambda doc: doc.newid)
    topics_in = {split: {doc.topics[0] for doc in single if doc.split == split} for split in SPLITS}
    classes = sorted(topics_in["train"] & topics_in["test"])
    class_id = {topic: i for i, topic in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        rows = [doc for doc in single if doc.split == split and doc.topics[0] in class_id]
        splits[split] = TextSplit(
            ids=np.array([f"{name}-{doc.newid}" for doc in rows], dtype=str),
            texts=[doc.text for doc in rows],
            labels=np.array([class_id[doc.topics[0]] for doc in rows], dtype=np.int64),
        )
    return TextDataset(name=name, classes=classes, splits=splits, source=dict(source or {}))


def load_r52(paths: list[str | Path], name: str = "r52") -> TextDataset:
    """Parse the raw SGML files (``.sgm`` or ``.sgm.gz``) and derive R52; the source records each file's sha256."""
    docs: list[ReutersDoc] = []
    files = {}
    for path in sorted(map(Path, paths)):
        raw, digest = read_sgml(path)
        files[path.name.removesuffix(".gz")] = {"path": str(path), "sha256": digest}
        docs.extend(parse_sgml(raw, str(path)))
    newids = [doc.newid for doc in docs]
    if len(set(newids)) != len(newids):
        raise InputError(f"Reuters SGML files {', '.join(map(str, paths))}: a NEWID occurs twice (a file given twice?)")
    source = {
        "kind": "lab",
        "lab": name,
        "derivation": "Reuters-21578 ModApte, exactly one topic, topics with >=1 train and >=1 test document",
        "files": files,
    }
    return derive_r52(docs, name=name, source=source)
