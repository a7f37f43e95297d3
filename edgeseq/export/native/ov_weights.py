"""One weights file for two OpenVINO IRs of the same model: point a rewritten graph's constants at
the bytes they already have in the artifact's own .bin, then make its .bin a hard link to that file.

An IR's .xml names each constant by (offset, size) in the .bin of the same stem, so a second graph
over the same weights (the stateful IR openvino.genai reads) would otherwise carry a full copy. The
rewrite adds a few small constants (shapes, axes, a zero); those not already in the original file
are appended to it (a tail of a few hundred bytes its own .xml never reads; the regions it reads
are unchanged).
"""
from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from pathlib import Path

TAIL_LIMIT = 1 << 16  # bytes of new constants appended at most
ALIGN = 8  # a constant found by search must start on a multiple of this (the large ones keep their own offsets)


def _consts(root: ET.Element) -> list[ET.Element]:
    return [layer.find("data") for layer in root.iter("layer")  # type: ignore[misc]
            if layer.get("type") == "Const" and layer.find("data") is not None
            and layer.find("data").get("offset") is not None]  # type: ignore[union-attr]


def share_weights(xml: Path, source_xml: Path, tail_limit: int = TAIL_LIMIT) -> bool:
    """Make `xml`'s weights file a hard link to `source_xml`'s (appending the constants it lacks, at most
    `tail_limit` bytes of them); True if so."""
    binary, source_bin = xml.with_suffix(".bin"), source_xml.with_suffix(".bin")
    mine, theirs = binary.read_bytes(), source_bin.read_bytes()
    known: dict[tuple[int, str], int] = {}
    for data in _consts(ET.parse(source_xml).getroot()):
        off, size = int(data.get("offset", 0)), int(data.get("size", 0))
        known.setdefault((size, hashlib.sha1(theirs[off:off + size]).hexdigest()), off)
    tree = ET.parse(xml)
    tail = bytearray()
    for data in _consts(tree.getroot()):
        off, size = int(data.get("offset", 0)), int(data.get("size", 0))
        piece = mine[off:off + size]
        at = known.get((size, hashlib.sha1(piece).hexdigest()))
        if at is None:
            at = _find_aligned(theirs, piece)
        if at is None:
            tail += bytes(-(len(theirs) + len(tail)) % ALIGN)
            at = len(theirs) + len(tail)
            known[(size, hashlib.sha1(piece).hexdigest())] = at
            tail += piece
        data.set("offset", str(at))
    if len(tail) > tail_limit:  # not a rewrite of the same weights: keep the copy
        return False
    tree.write(xml, encoding="utf-8", xml_declaration=True)
    with source_bin.open("ab") as f:
        f.write(tail)
    theirs += tail
    binary.unlink()
    try:
        os.link(source_bin, binary)
    except OSError:  # a file system without hard links: the copy, with the offsets of the source
        binary.write_bytes(theirs)
    return True


def _find_aligned(haystack: bytes, piece: bytes) -> int | None:
    at = haystack.find(piece)
    while at >= 0 and at % ALIGN:
        at = haystack.find(piece, at + 1)
    return at if at >= 0 else None
