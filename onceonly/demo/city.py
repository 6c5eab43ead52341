"""A synthetic city: people, households and enterprises, generated from a seed so every run is the same story.

About one person in ten still carries a legacy 15-digit ID number (issued before 1999), which the workload
upgrades to the 18-digit form: the change the mission statement starts from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from onceonly.standard.identity import id18_check_char, upgrade_id15, uscc_check_char

DISTRICTS = {
    "110101": "东城区",
    "110102": "西城区",
    "110105": "朝阳区",
    "110106": "丰台区",
    "110108": "海淀区",
    "110114": "昌平区",
}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍鹏建华红梅飞鑫波宁琳晨阳浩然子涵雨欣思远"
STREETS = ("建国路", "长安街", "中关村大街", "望京西路", "丰台北路", "回龙观东大街", "东四十条", "金融街")


@dataclass
class Person:
    id_number: str
    name: str
    sex: str
    birth_date: date
    district_code: str
    address: str
    household_id: str
    ethnicity: str = "01"
    residence_type: str = "registered"
    residence_permit_no: str | None = None
    status: str = "active"

    def record(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class City:
    """Everything the authorities know at the start."""

    people: list[Person] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(1999))
    _serial: int = 0

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    def name(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(self.rng.choice(GIVEN) for _ in range(self.rng.randint(1, 2)))

    def address(self, district: str) -> str:
        street = self.rng.choice(STREETS)
        number, building, flat = self.rng.randint(1, 300), self.rng.randint(1, 20), self.rng.randint(101, 2405)
        return f"北京市{DISTRICTS[district]}{street}{number}号{building}-{flat}"

    def id_number(self, district: str, born: date, sex: str, legacy: bool) -> str:
        """A valid ID number: sequence digits odd for men, even for women; 15 digits when ``legacy``."""
        seq = self.serial() % 500 * 2 + (1 if sex == "1" else 0)
        if legacy:
            return f"{district}{born:%y%m%d}{seq:03d}"
        first17 = f"{district}{born:%Y%m%d}{seq:03d}"
        return first17 + id18_check_char(first17)

    def person(self, born: date | None = None, district: str | None = None, legacy: bool = False) -> Person:
        sex = self.rng.choice("12")
        born = born or date(1940, 1, 1) + timedelta(days=self.rng.randint(0, 365 * 58))
        district = district or self.rng.choice(list(DISTRICTS))
        household = f"{district}{self.serial():08d}"
        return Person(
            id_number=self.id_number(district, born, sex, legacy),
            name=self.name(),
            sex=sex,
            birth_date=born,
            district_code=district,
            address=self.address(district),
            household_id=household,
        )

    def uscc(self) -> str:
        first17 = f"9111{self.rng.choice(list(DISTRICTS))[2:]}MA{self.serial():07d}"
        first17 = first17[:17].ljust(17, "0")
        return first17 + uscc_check_char(first17)


def seed_city(people: int, legacy_share: float = 0.1, seed: int = 1999) -> City:
    """``people`` residents, ``legacy_share`` of them born before 1999-issued IDs with a 15-digit number."""
    city = City(rng=random.Random(seed))
    taken: set[str] = set()
    while len(city.people) < people:
        legacy = len(city.people) % max(1, round(1 / legacy_share)) == 0 if legacy_share else False
        born = date(1940, 1, 1) + timedelta(days=city.rng.randint(0, 365 * 55)) if legacy else None
        person = city.person(born=born, legacy=legacy)
        keys = {person.id_number, upgrade_id15(person.id_number) if legacy else person.id_number}
        if keys & taken:
            continue
        taken |= keys
        city.people.append(person)
    return city
