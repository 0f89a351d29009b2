"""The DBC layouts that parted the two decode paths (issue 14, bugs 2 to 4), each
decoded frame by frame and in a batch, with the values cantools gives."""

from __future__ import annotations

import cantools
import pytest
from cantools.database.can import Database

from oodida.hw.dbc import SignalDecoder
from oodida.hw.frames import FrameBatch

DBC = """VERSION ""

NS_ :

BS_:

BU_: N

BO_ 257 SWITCH: 8 N
 SG_ SW M : 0|8@1+ (1,0) [0|0] "" N
 SG_ X m1 : 8|8@1+ (1,0) [0|0] "" N
 SG_ Y : 16|8@1+ (1,0) [0|0] "" N

BO_ 648 Motor_2: 8 N
 SG_ Speed : 24|8@1+ (1.28,0) [0|325] "km/h" N
 SG_ Code M : 6|2@1+ (1,0) [0|0] "" N
 SG_ InfoA m1 : 0|6@1+ (1,0) [0|0] "" N
 SG_ InfoB m2 : 0|6@1+ (1,0) [0|0] "" N

BO_ 649 Gate_Komf: 8 N
 SG_ Sel M : 0|2@1+ (1,0) [0|0] "" N
 SG_ P m0 : 8|8@1+ (1,0) [0|0] "" N
 SG_ Q m0 : 12|8@1+ (1,0) [0|0] "" N
 SG_ R m1 : 8|16@1+ (1,0) [0|0] "" N

BO_ 651 Motor_2m: 8 N
 SG_ Speed : 24|8@1+ (1.28,0) [0|325] "km/h" N
 SG_ Code m : 6|2@1+ (1,0) [0|0] "" N
 SG_ InfoA m1 : 0|6@1+ (1,0) [0|0] "" N
 SG_ InfoB m2 : 0|6@1+ (1,0) [0|0] "" N

BO_ 650 WIDE: 8 N
 SG_ W : 0|60@1+ (1,0) [0|0] "" N
 SG_ V : 8|8@1+ (1,0) [0|0] "" N

VAL_ 257 SW 1 "one" 2 "two" 3 "three" ;
SG_MUL_VAL_ 648 InfoA Code 1-1;
SG_MUL_VAL_ 648 InfoB Code 2-3;
SG_MUL_VAL_ 651 InfoA Code 1-1;
SG_MUL_VAL_ 651 InfoB Code 2-3;
"""


@pytest.fixture(scope="module")
def db() -> Database:
    database = cantools.database.load_string(DBC, database_format="dbc", strict=False)
    assert isinstance(database, Database)
    return database


def _both(db: Database, frame_id: int, payloads: list[bytes]) -> list[tuple[dict, int]]:
    """{signal: [values]} and the malformed count, per frame and batched."""
    per = SignalDecoder.from_database(db)
    values: dict[str, list[float]] = {}
    for data in payloads:
        for name, value in per.decode(frame_id, data) or ():
            values.setdefault(name, []).append(value)
    batched = SignalDecoder.from_database(db)
    out = batched.decode_batch(FrameBatch.from_frames([(float(i), frame_id, d) for i, d in enumerate(payloads)]))
    return [(values, per.malformed_frames), ({k: v.tolist() for k, (_, v) in out.items()}, batched.malformed_frames)]


def test_multiplexer_values_named_only_in_the_value_table_are_decoded(db: Database) -> None:
    """SW = 2 and 3 select no signal but are in SW's value table: cantools decodes
    those frames (SW and Y); SW = 0 is defined nowhere and is malformed."""
    frames = [bytes([1, 10, 20, 0, 0, 0, 0, 0]), bytes([2, 11, 21, 0, 0, 0, 0, 0]),
              bytes([3, 12, 22, 0, 0, 0, 0, 0]), bytes([0, 13, 23, 0, 0, 0, 0, 0])]
    message = db.get_message_by_name("SWITCH")
    assert message.decode(frames[1], decode_choices=False) == {"SW": 2, "Y": 21}
    for values, malformed in _both(db, 257, frames):
        assert values == {"SWITCH.SW": [1.0, 2.0, 3.0], "SWITCH.X": [10.0], "SWITCH.Y": [20.0, 21.0, 22.0]}
        assert malformed == 1


def test_signals_tied_by_sg_mul_val_follow_their_selector(db: Database) -> None:
    """Motor_2: InfoB is declared m2 and tied to Code 2-3 by SG_MUL_VAL_."""
    frames = [bytes([0x41, 0, 0, 100, 0, 0, 0, 0]), bytes([0x82, 0, 0, 100, 0, 0, 0, 0]),
              bytes([0xC3, 0, 0, 100, 0, 0, 0, 0])]
    for values, malformed in _both(db, 648, frames):
        assert values["Motor_2.InfoA"] == [1.0]
        assert values["Motor_2.InfoB"] == [2.0, 3.0]
        assert values["Motor_2.Code"] == [1.0, 2.0, 3.0]
        assert malformed == 0


def test_a_multiplexer_marked_m_and_named_by_sg_mul_val_selects_its_signals(db: Database) -> None:
    """Motor_2 as vw_pq.dbc has it: Code is marked `m`, not `M`, and SG_MUL_VAL_ ties
    InfoA to Code 1 and InfoB to Code 2-3. cantools decodes neither; the per-frame
    path used to give both on every frame. Both paths now follow the selector."""
    frames = [bytes([0x00, 0, 0, 100, 0, 0, 0, 0]), bytes([0x41, 0, 0, 100, 0, 0, 0, 0]),
              bytes([0x82, 0, 0, 100, 0, 0, 0, 0]), bytes([0xC3, 0, 0, 100, 0, 0, 0, 0])]
    assert "InfoA" not in db.get_message_by_name("Motor_2m").decode(frames[1])
    for values, malformed in _both(db, 651, frames):
        assert values["Motor_2m.InfoA"] == [1.0]
        assert values["Motor_2m.InfoB"] == [2.0, 3.0]
        assert values["Motor_2m.Speed"] == [128.0] * 3  # not from the malformed frame
        assert malformed == 1  # Code = 0 selects nothing and is not in a value table


def test_overlapping_signals_in_a_multiplexed_message_are_each_decoded_as_declared(db: Database) -> None:
    """Gate_Komf: P and Q overlap in branch 0 (cantools refuses those frames); both
    paths decode each as declared, and branch 1 as cantools does."""
    frames = [bytes([0, 0x34, 0x12, 0, 0, 0, 0, 0]), bytes([1, 0x34, 0x12, 0, 0, 0, 0, 0])]
    with pytest.raises(cantools.database.DecodeError):
        db.get_message_by_name("Gate_Komf").decode(frames[0])
    for values, malformed in _both(db, 649, frames):
        assert values == {"Gate_Komf.Sel": [0.0, 1.0], "Gate_Komf.P": [0x34], "Gate_Komf.Q": [0x23],
                          "Gate_Komf.R": [0x1234]}
        assert malformed == 0


def test_overlapping_signals_that_need_cantools_are_each_decoded_as_declared(db: Database) -> None:
    """WIDE: a 60-bit signal (past float64's exact integers, so cantools decodes it)
    overlapped by V: every frame used to be malformed."""
    data = bytes([0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0xF1])
    for values, malformed in _both(db, 650, [data]):
        assert values == {"WIDE.W": [float(0x1234567_89ABCDEF)], "WIDE.V": [float(0xCD)]}
        assert malformed == 0
