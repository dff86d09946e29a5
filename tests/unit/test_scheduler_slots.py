"""Slots: named counted capacities, alone and as the scheduler's ``max_parallel`` and agent types."""

from __future__ import annotations

import pytest

from queue_core.errors import InvalidArgumentError
from queue_core.slots import Slot

# --- the slot alone -----------------------------------------------------------------------------


def test_a_slot_of_two_admits_two_holders_and_is_full_with_them() -> None:
    slot = Slot("agent:dev", 2)
    assert not slot.full
    slot.take("t1")
    assert not slot.full  # one unit is left
    slot.take("t2")
    assert slot.full
    assert slot.holders == ("t1", "t2")
    assert len(slot) == 2
    assert "t2" in slot
    assert "t3" not in slot


def test_a_slot_of_one_is_full_with_one_holder() -> None:
    slot = Slot("agent:dev", 1)
    slot.take("t1")
    assert slot.full


def test_the_first_holder_is_the_one_that_has_held_longest() -> None:
    slot = Slot("agent:dev", 2)
    assert slot.first is None
    slot.take("t2")
    slot.take("t1")
    assert slot.first == "t2"  # the order taken, not the names'
    slot.release("t2")
    slot.take("t3")
    assert slot.first == "t1"
    assert slot.holders == ("t1", "t3")


def test_a_released_unit_makes_room_again() -> None:
    slot = Slot("max_parallel", 2)
    slot.take("t1")
    slot.take("t2")
    slot.release("t1")
    assert not slot.full
    assert slot.holders == ("t2",)


def test_holders_it_could_not_refuse_keep_it_full_until_enough_let_go() -> None:
    slot = Slot("agent:dev", 1)
    slot.take("here")
    slot.take("elsewhere")  # another process runs it whatever this one decides
    assert len(slot) == 2
    slot.release("here")
    assert slot.full
    slot.release("elsewhere")
    assert not slot.full


def test_a_holder_takes_one_unit_only() -> None:
    slot = Slot("agent:dev", 2)
    slot.take("t1")
    with pytest.raises(InvalidArgumentError, match="'t1' already holds a unit of agent:dev"):
        slot.take("t1")
    assert slot.holders == ("t1",)


def test_releasing_what_is_not_held_raises() -> None:
    slot = Slot("agent:dev", 1)
    with pytest.raises(KeyError):
        slot.release("t1")


def test_repr_names_the_slot_its_count_and_holders() -> None:
    slot = Slot("agent:dev", 2)
    slot.take("t1")
    assert repr(slot) == "Slot('agent:dev', 1/2, holders=['t1'])"
