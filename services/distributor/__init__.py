"""The distributor: applies sharing agreements to change events, writes each holder's projection to its inbox,
answers interest registrations with fill messages, and records every delivery in a hash-chained ledger.

    from services.distributor import load_agreements, run_distributor
    run_distributor(load_agreements(Path("onceonly.yaml")), settings)
"""

from __future__ import annotations

from onceonly.settings import Settings
from onceonly.standard import RegistryClient
from services.distributor.agreements import Agreement, Agreements, load_agreements
from services.distributor.interest import InterestClient, current_interest
from services.distributor.ledger import Chain, LedgerBroken, verify
from services.distributor.worker import Distributor
from services.subscriber.supervisor import Supervisor, tune_gc

__all__ = [
    "Agreement",
    "Agreements",
    "Chain",
    "Distributor",
    "InterestClient",
    "LedgerBroken",
    "current_interest",
    "load_agreements",
    "make_distributor",
    "run_distributor",
    "verify",
]


def make_distributor(agreements: Agreements, settings: Settings, *, batch_size: int = 500) -> Distributor:
    """A distributor on the deployment's schema registry."""
    return Distributor(agreements, settings, RegistryClient(settings.registry_url), batch_size=batch_size)


def run_distributor(
    agreements: Agreements,
    settings: Settings,
    *,
    batch_size: int = 500,
    grace: float = 8.0,
    install_signals: bool = True,
) -> None:
    """Distribute until SIGTERM/SIGINT; a stop finishes or abandons the batch in flight within ``grace`` seconds."""
    worker = make_distributor(agreements, settings, batch_size=batch_size)
    tune_gc()
    Supervisor([worker], grace=grace, name="distributor").run(install_signals=install_signals)
