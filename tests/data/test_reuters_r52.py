"""R52 from raw Reuters-21578 SGML: the counts published in SOURCE.md and the reference texts, exactly."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from distillab.data import train_counts
from distillab.data.reuters import clean, derive_r52, parse_sgml

# shared/data/reuters-r52/SOURCE.md, "Train class counts (train/test)", copied verbatim.
SOURCE_COUNTS = """earn 2840/1083, acq 1596/696, crude 253/121, trade 251/75, money-fx 206/87, interest 190/81,
money-supply 123/28, ship 108/36, sugar 97/25, coffee 90/22, gold 70/20, gnp 58/15, cpi 54/17, cocoa 46/15, grain 41/10,
jobs 37/12, reserves 37/12, ipi 33/11, alum 31/19, copper 31/13, rubber 31/9, iron-steel 26/12, nat-gas 24/12, bop 22/9,
retail 19/1, veg-oil 19/11, tin 17/10, cotton 15/9, housing 15/2, wpi 14/9, livestock 13/5, orange 13/9, pet-chem 13/6,
lei 11/3, gas 10/8, strategic-metal 9/6, zinc 8/5, income 7/4, lumber 7/4, carcass 6/5, heat 6/4, meal-feed 6/1,
instal-debt 5/1, fuel 4/7, lead 4/4, cpu 3/1, dlr 3/3, nickel 3/1, jet 2/1, potato 2/3, tea 2/3, platinum 1/2"""


def published_counts() -> dict[str, tuple[int, int]]:
    counts = {}
    for item in SOURCE_COUNTS.replace("\n", " ").split(","):
        name, pair = item.split()
        train, test = pair.split("/")
        counts[name] = (int(train), int(test))
    return counts


def test_r52_matches_published_counts(r52):
    published = published_counts()
    assert len(published) == 52
    assert r52.classes == sorted(published)
    assert len(r52.splits["train"]) == 6532 and len(r52.splits["test"]) == 2568
    ours = {
        name: (int(tr), int(te))
        for name, tr, te in zip(r52.classes, train_counts(r52, "train"), train_counts(r52, "test"))
    }
    assert ours == published


def test_r52_texts_equal_reference_jsonl_text_for_text(r52, shared):
    """Every (id, label, text) equals the reference dump; we derive, the dump is only the check."""
    for split in ("train", "test"):
        reference = [json.loads(line) for line in (shared / "reuters-r52" / f"r52_{split}.jsonl").open(encoding="utf-8")]
        ours = r52.splits[split]
        assert ours.ids.tolist() == [f"r52-{row['newid']}" for row in reference]
        assert [r52.classes[i] for i in ours.labels] == [row["label"] for row in reference]
        mismatched = [row["newid"] for row, text in zip(reference, ours.texts) if row["text"] != text]
        assert mismatched == [], f"{len(mismatched)} {split} texts differ, first NEWIDs {mismatched[:5]}"
    assert r52.classes == json.loads((shared / "reuters-r52" / "labels.json").read_text())


def test_r52_source_records_every_raw_file_hash(r52):
    files = r52.source["files"]
    assert sorted(files) == [f"reut2-{i:03d}.sgm" for i in range(22)]
    assert all(len(entry["sha256"]) == 64 for entry in files.values())
    assert r52.source["lab"] == "r52" and set(r52.source["lab_files"]) == {f"raw/{name}" for name in files}
    assert json.loads(json.dumps(r52.source)) == r52.source


SGML = """<!DOCTYPE lewis SYSTEM "lewis.dtd">
<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="1" NEWID="10">
<TOPICS><D>grain</D></TOPICS>
<TEXT>&#2;
<TITLE>WHEAT &amp; CORN &lt;UP&gt;</TITLE>
<DATELINE>    CHICAGO, March 1 - </DATELINE><BODY>Prices rose
   sharply,&#127; traders said.
 Reuter
&#3;</BODY></TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TEST" CGISPLIT="PUBLISHED-TESTSET" OLDID="2" NEWID="11">
<TOPICS><D>grain</D></TOPICS>
<TEXT TYPE="BRIEF">&#2;
<TITLE>******WHEAT BRIEF</TITLE>
&#3;</TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TEST" CGISPLIT="PUBLISHED-TESTSET" OLDID="3" NEWID="12">
<TOPICS><D>grain</D></TOPICS>
<TEXT TYPE="UNPROC">&#2;
GRAIN TABLE
   Wheat.....1.2   vs  1.1
&#3;</TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="4" NEWID="13">
<TOPICS><D>grain</D><D>corn</D></TOPICS>
<TEXT><TITLE>TWO TOPICS</TITLE><BODY>dropped</BODY></TEXT>
</REUTERS>
<REUTERS TOPICS="NO" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="5" NEWID="14">
<TOPICS><D>grain</D></TOPICS>
<TEXT><TITLE>NOT MODAPTE</TITLE><BODY>dropped</BODY></TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="NOT-USED" CGISPLIT="TRAINING-SET" OLDID="6" NEWID="15">
<TOPICS><D>grain</D></TOPICS>
<TEXT><TITLE>NOT USED</TITLE><BODY>dropped</BODY></TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="7" NEWID="16">
<TOPICS><D>ship</D></TOPICS>
<TEXT><TITLE>TRAIN ONLY TOPIC</TITLE><BODY>dropped: ship has no test document</BODY></TEXT>
</REUTERS>
"""


def test_parse_rules_on_a_hand_written_file():
    docs = parse_sgml(SGML)
    assert [d.newid for d in docs] == [10, 11, 12, 13, 16]  # TOPICS="NO" and NOT-USED are outside ModApte
    by_id = {d.newid: d for d in docs}
    # Title + newline + body; dateline dropped; entities unescaped; &#N; and DEL removed; spaces collapsed.
    assert by_id[10].text == "WHEAT & CORN <UP>\nPrices rose sharply, traders said. Reuter"
    assert by_id[11].text == "******WHEAT BRIEF"  # BRIEF: no body, so the title alone (no trailing newline)
    assert by_id[12].text == "GRAIN TABLE Wheat.....1.2 vs 1.1"  # UNPROC: the whole <TEXT>
    dataset = derive_r52(docs, name="r52")
    assert dataset.classes == ["grain"]  # multi-topic doc dropped; "ship" has no test document
    assert dataset.splits["train"].ids.tolist() == ["r52-10"]
    assert dataset.splits["test"].ids.tolist() == ["r52-11", "r52-12"]
    assert np.array_equal(dataset.splits["test"].labels, [0, 0])


def test_clean_removes_control_characters_but_keeps_word_boundaries():
    assert clean("a\x01b\nc\td&#22;e &lt;f&gt;") == "ab c de <f>"


def test_r52_special_document_types_counted(r52):
    """SOURCE.md: 790 BRIEF documents (title only, no newline) and 48 UNPROC (whole text, no newline)."""
    without_newline = Counter(split for split, s in r52.splits.items() for t in s.texts if "\n" not in t)
    assert without_newline == {"train": 567 + 37, "test": 223 + 11}
