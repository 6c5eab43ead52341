"""One holder's side of the sharing agreements: what it may receive, and where, as the distributor decides it.

Replay and bootstrap build their routes with the distributor's own code (``build_routes``, ``governing``,
``register_routes``), so a redelivered record is projected exactly as a live one: the holder still receives only
the fields its agreement in force grants, and nothing when that agreement has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from onceonly.catalog import load_departments
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError
from services.distributor.agreements import Agreements
from services.distributor.policy import governing
from services.distributor.projection import Route
from services.distributor.reading import read_to_end
from services.distributor.state import InterestSet
from services.distributor.topology import Topics, build_routes, register_routes
from services.operator.replay_errors import NoAgreement
from services.operator.time_window import partitions as partitions_of_topics


@dataclass(frozen=True)
class HolderRoutes:
    holder: str
    topics: Topics
    routes: dict[str, list[Route]]  # entity type -> this holder's routes (every agreement, in force or not)

    @classmethod
    def of(
        cls, agreements: Agreements, settings: Settings, holder: str, entity_types: list[str] | None = None
    ) -> HolderRoutes:
        """The holder's routes; an unknown department, or one no agreement covers, is a clear error."""
        load_departments().get(holder)  # ConfigError naming the known departments
        topics = Topics.of(settings)
        mine = {e: [r for r in routes if r.holder == holder] for e, routes in build_routes(agreements, topics).items()}
        mine = {e: routes for e, routes in mine.items() if routes}
        if not mine:
            covered = ", ".join(agreements.holders) or "none"
            raise NoAgreement(
                f"no agreement in {agreements.source} grants {holder} anything, so there is nothing it may receive",
                hint=f"holders with agreements: {covered}",
            )
        if entity_types:
            unknown = [e for e in entity_types if e not in mine]
            if unknown:
                raise NoAgreement(
                    f"{holder} is not granted {', '.join(unknown)}", hint=f"it is granted: {', '.join(sorted(mine))}"
                )
            mine = {e: mine[e] for e in entity_types}
        return cls(holder, topics, mine)

    @property
    def entity_types(self) -> list[str]:
        return sorted(self.routes)

    @property
    def inbox(self) -> str:
        return self.topics.inbox(self.holder)

    def change_topics(self) -> dict[str, str]:
        """Physical change topic -> entity type."""
        return {self.topics.change(e): e for e in self.entity_types}

    def state_topics(self) -> dict[str, str]:
        """Physical state topic -> entity type."""
        return {self.topics.state(e): e for e in self.entity_types}

    def governing(self, entity_type: str, now: datetime) -> dict[str, Route]:
        """``{holder: route}`` in force at ``now`` (else the one that ended last, so a refusal says why)."""
        return governing(self.routes.get(entity_type, []), now)

    def live(self, now: datetime) -> list[Route]:
        return [r for routes in self.routes.values() for r in routes if now < r.agreement.ends]

    def register(self, registry: RegistryClient, now: datetime) -> None:
        """Own the inbox subjects as the distributor does (compatibility-checked), before writing to the inbox."""
        register_routes(registry, self.live(now), self.topics.inbox_compatibility())

    def unregistered(self, registry: RegistryClient, now: datetime) -> list[Route]:
        """Live routes whose projected schema is not registered: no distributor has delivered them yet."""
        return [r for r in self.live(now) if registry.lookup(r.subject, r.schema) is None]


def interest_now(settings: Settings, serde: Serde) -> InterestSet:
    """Every interest registration in force, folded from the whole ``interest`` topic (as the distributor does)."""
    interest = InterestSet()
    topic = settings.topic("interest")
    for message in read_to_end(settings, dict.fromkeys(partitions_of_topics(settings, [topic]), 0)):
        try:
            interest.apply(serde.decode(message.value()).record)
        except SerdeError:
            continue
    return interest
