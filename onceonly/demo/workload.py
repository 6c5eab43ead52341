"""The demo's story as change events: seed, then a wave of real-life changes, each recorded once at its authority.

Every 15-digit ID number is upgraded to 18 digits, people move, marry, adopt, are born, die and enrol in
pension insurance; one record is corrected. Where households were seeded, public security keeps their booklets
up to date too: a member's new number, a child born or adopted into it, a move (the household moves along, or the
mover leaves it for a household of their own). Each step names its authority; the runner hands it to that
authority's adapter (``authorities.py``). The poison record is not here: it is injected raw by the runner,
because no authority's adapter would let it through.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from onceonly.demo.city import DISTRICTS, City, Person
from onceonly.demo.truth import Record, Truth
from onceonly.standard.identity import upgrade_id15


@dataclass(frozen=True)
class Step:
    """One change event and the authority that records it."""

    authority: str
    change: Record


def seed(city: City, truth: Truth, households: bool = False) -> Iterator[Step]:
    """Every resident's registration at public security; with ``households``, residents are first grouped into
    households (one to five people of a district, at the head's address) and each household is registered too."""
    if households:
        form_households(city)
    for p in city.people:
        yield Step("public_security", truth.change("person", p.id_number, p.record(), "registered"))
    if households:
        members: dict[str, list[Person]] = {}
        for p in city.people:
            members.setdefault(p.household_id, []).append(p)
        for household_id, people in members.items():
            head = people[0]
            record = {
                "household_id": household_id,
                "head_id_number": head.id_number,
                "member_id_numbers": [p.id_number for p in people],
                "district_code": head.district_code,
                "address": head.address,
                "kind": "family",
            }
            yield Step("public_security", truth.change("household", household_id, record, "created"))


def form_households(city: City, seed: int = 2000) -> None:
    """Group the residents of each district into households of one to five: the first one's number and address.

    A random generator of its own, so the rest of the story (drawn from ``city.rng``) does not change with it.
    """
    rng = random.Random(seed)
    by_district: dict[str, list[Person]] = {}
    for p in city.people:
        by_district.setdefault(p.district_code, []).append(p)
    for people in by_district.values():
        i = 0
        while i < len(people):
            group = people[i : i + rng.randint(1, 5)]
            for p in group[1:]:
                p.household_id, p.address = group[0].household_id, group[0].address
            i += len(group)


def depositors(truth: Truth, share: int = 3) -> list[str]:
    """The provident fund's depositors: every ``share``-th person known now, in key order."""
    return sorted(truth.live("person"))[::share]


def _household(truth: Truth, household_id: str, event_type: str, edit: Callable[[Record], None]) -> Iterator[Step]:
    """public_security's change to a household booklet (none when households were not seeded)."""
    current = truth.current("household", household_id)
    if current is None:
        return
    record = {**current, "member_id_numbers": list(current["member_id_numbers"])}
    edit(record)
    yield Step("public_security", truth.change("household", household_id, record, event_type))


def _renumbered(old: str, new: str) -> Callable[[Record], None]:
    def edit(household: Record) -> None:
        household["member_id_numbers"] = [new if m == old else m for m in household["member_id_numbers"]]
        if household["head_id_number"] == old:
            household["head_id_number"] = new

    return edit


def _joined(id_number: str) -> Callable[[Record], None]:
    return lambda household: household["member_id_numbers"].append(id_number)


def _left(id_number: str) -> Callable[[Record], None]:
    def edit(household: Record) -> None:
        household["member_id_numbers"].remove(id_number)
        if household["head_id_number"] == id_number:
            household["head_id_number"] = household["member_id_numbers"][0]

    return edit


def _moved(district: str, address: str) -> Callable[[Record], None]:
    return lambda household: household.update(district_code=district, address=address)


def _move(city: City, truth: Truth, p: Person) -> Iterator[Step]:
    """A move: alone in the household, the household moves along; else the mover starts a household of their own."""
    p.district_code = city.rng.choice([d for d in DISTRICTS if d != p.district_code])
    p.address = city.address(p.district_code)
    old = truth.current("household", p.household_id)
    if old is None or len(old["member_id_numbers"]) == 1:
        yield Step("public_security", truth.change("person", p.id_number, p.record(), "moved_in"))
        yield from _household(truth, p.household_id, "moved_in", _moved(p.district_code, p.address))
        return
    left, p.household_id = p.household_id, f"{p.district_code}{city.serial():08d}"
    yield Step("public_security", truth.change("person", p.id_number, p.record(), "moved_in"))
    yield from _household(truth, left, "moved_out", _left(p.id_number))
    record = {
        "household_id": p.household_id,
        "head_id_number": p.id_number,
        "member_id_numbers": [p.id_number],
        "district_code": p.district_code,
        "address": p.address,
        "kind": "family",
    }
    yield Step("public_security", truth.change("household", p.household_id, record, "created"))


def wave(city: City, truth: Truth, today: date | None = None) -> Iterator[Step]:
    """The changes of one busy period, interleaved as they would arrive."""
    today = today or date.today()
    rng = city.rng
    people = list(city.people)
    for p in people:
        if len(p.id_number) == 15:
            old, p.id_number = p.id_number, upgrade_id15(p.id_number)
            yield Step(
                "public_security",
                truth.change("person", p.id_number, p.record(), "identifier_upgraded", supersedes=old),
            )
            yield from _household(truth, p.household_id, "updated", _renumbered(old, p.id_number))
    for p in rng.sample(people, k=max(1, len(people) // 10)):
        yield from _move(city, truth, p)
    singles = [p for p in people if p.birth_date < today - timedelta(days=365 * 22)]
    rng.shuffle(singles)
    couples = list(zip(singles[0 : len(singles) // 10 : 2], singles[1 : len(singles) // 10 : 2], strict=False))
    for a, b in couples:
        reg = f"J{city.serial():010d}"
        record = {
            "registration_no": reg,
            "party_a_id_number": a.id_number,
            "party_b_id_number": b.id_number,
            "status": "married",
            "registered_on": today,
            "registry_office": f"{DISTRICTS[a.district_code]}婚姻登记处",
        }
        yield Step("civil_affairs", truth.change("marriage", reg, record, "married"))
    for a, b in couples[: max(1, len(people) // 1000)]:  # a few couples adopt a child who moves in with them
        child = city.person(born=today - timedelta(days=rng.randint(365, 365 * 12)), district=a.district_code)
        child.household_id, child.address = a.household_id, a.address
        city.people.append(child)
        yield Step("public_security", truth.change("person", child.id_number, child.record(), "registered_move_in"))
        yield from _household(truth, child.household_id, "adopted", _joined(child.id_number))
        reg = f"S{city.serial():010d}"
        adoption = {
            "registration_no": reg,
            "child_id_number": child.id_number,
            "adopter_id_numbers": [a.id_number, b.id_number],
            "registered_on": today,
            "status": "registered",
        }
        yield Step("civil_affairs", truth.change("adoption", reg, adoption, "adopted"))
    for mother in rng.sample([p for p in people if p.sex == "2"], k=max(1, len(people) // 50)):
        cert = f"O{city.serial():09d}"
        child = city.person(born=today, district=mother.district_code)
        child.household_id, child.address = mother.household_id, mother.address
        birth = {
            "certificate_no": cert,
            "child_name": child.name,
            "sex": child.sex,
            "birth_date": today,
            "mother_id_number": mother.id_number,
            "father_id_number": None,
            "hospital": "北京妇产医院",
        }
        yield Step("health", truth.change("birth", cert, birth, "born"))
        city.people.append(child)
        yield Step("public_security", truth.change("person", child.id_number, child.record(), "registered_birth"))
        yield from _household(truth, child.household_id, "born", _joined(child.id_number))
    for p in rng.sample(people, k=max(1, len(people) // 20)):
        record = {
            "id_number": p.id_number,
            "scheme": rng.choice(["urban_employee", "urban_rural_resident"]),
            "status": "enrolled",
            "enrolled_on": today,
            "insured_region": p.district_code,
        }
        yield Step("hrss", truth.change("pension", p.id_number, record, "enrolled"))
    corrected = people[len(people) // 2]
    corrected.name = corrected.name + "（更正）"
    yield Step(
        "public_security",
        truth.change("person", corrected.id_number, corrected.record(), "corrected", correction=True),
    )
    # Deaths come last, so most of the dead also had an upgrade or a move recorded earlier in the wave. The
    # death travels on its own topic and often overtakes those at a holder; the holder still applies them,
    # keeping the record ended (see connectors/sinks/guard.py).
    mortal = [p for p in people if p is not corrected]
    for p in rng.sample(mortal, k=max(1, len(people) // 100)):
        death = {
            "id_number": p.id_number,
            "certificate_no": f"D{city.serial():09d}",
            "date_of_death": today,
            "place": None,
        }
        yield Step("health", truth.change("death", p.id_number, death, "died"))
