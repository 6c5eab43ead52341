"""The demo's story as change events: seed, then a wave of real-life changes, each recorded once at its authority.

Every 15-digit ID number is upgraded to 18 digits, people move, marry, adopt, are born, die and enrol in
pension insurance; one record is corrected. Each step names its authority; the runner hands it to that
authority's adapter (``authorities.py``). The poison record is not here: it is injected raw by the runner,
because no authority's adapter would let it through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from onceonly.demo.city import DISTRICTS, City
from onceonly.demo.truth import Record, Truth
from onceonly.standard.identity import upgrade_id15


@dataclass(frozen=True)
class Step:
    """One change event and the authority that records it."""

    authority: str
    change: Record


def seed(city: City, truth: Truth) -> Iterator[Step]:
    """Every resident's registration at public security, and the households they belong to."""
    for p in city.people:
        yield Step("public_security", truth.change("person", p.id_number, p.record(), "registered"))


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
    movers = rng.sample(people, k=max(1, len(people) // 10))
    for p in movers:
        p.district_code = rng.choice([d for d in DISTRICTS if d != p.district_code])
        p.address = city.address(p.district_code)
        yield Step("public_security", truth.change("person", p.id_number, p.record(), "moved_in"))
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
        child.household_id = a.household_id
        city.people.append(child)
        yield Step("public_security", truth.change("person", child.id_number, child.record(), "registered_move_in"))
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
        child.household_id = mother.household_id
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
