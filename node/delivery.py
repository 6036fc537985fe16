"""The sender: the outbox's pending deliveries go to their destinations by C-STORE, retried until accepted.

Runs in the ``serve``/``run`` process, in its own thread. Every ``queue.poll_s`` seconds it claims the due
deliveries (`sarcoscreen.db.outbox.claim_due`; a claim holds a row for ``5 x delivery.timeout_s`` so that two
senders never send it at once and a sender that died releases it), groups them by destination and sends each
group in one association (`sarcoscreen.node.storage_scu.send_files`: every file in its own transfer syntax, one
presentation context per SOP class and syntax).

Outcomes (PS3.4 Annex B, Table B.2-1; PS3.7 Annex C), by the status's category as pynetdicom gives it
(`storage_scu.SendOutcome.ok`): Success (0x0000) and the Warnings (0xB000 coercion, 0xB007 data set does not
match SOP class, 0xB006 elements discarded, ...) mark the delivery ``sent`` - a warning is logged with its
meaning; any failure status, an unknown status, a missing response, or no association at all (destination down,
rejected, TLS failure) is a failed attempt: the delivery is due again after ``delivery.retry_s * 2**(attempt-1)``
seconds (at most ``delivery.retry_max_s``), and after ``delivery.max_attempts`` attempts (when not 0) it is
``failed``. Addresses and TLS settings come from the
current ``[[destinations]]`` entry of the delivery's destination name, so a corrected address applies to
deliveries already queued. Output UIDs are deterministic: a resent object replaces itself at the destination.
"""

from __future__ import annotations

import logging
import ssl
from collections import defaultdict
from pathlib import Path

from pynetdicom.status import STATUS_WARNING
from sqlalchemy import Engine

from sarcoscreen.db.models import DeliveryStatus
from sarcoscreen.db.outbox import DueDelivery, claim_due, record_outcome
from sarcoscreen.node.background_loop import BackgroundLoop
from sarcoscreen.node.config import DestinationSettings, Settings
from sarcoscreen.node.storage_scu import Destination, DestinationError, send_files
from sarcoscreen.node.tls import client_context

__all__ = ["Sender", "destination_of"]

logger = logging.getLogger(__name__)


def destination_of(settings: DestinationSettings, calling_ae_title: str) -> Destination:
    """The `Destination` (with its TLS context) of a ``[[destinations]]`` entry; `TlsConfigError` on bad files."""
    tls: ssl.SSLContext | None = None
    if settings.tls:
        tls = client_context(settings.tls_ca_certificates, settings.tls_certificate, settings.tls_private_key,
                             check_hostname=settings.tls_check_hostname)
    return Destination(settings.ae_title, settings.host, settings.port, calling_ae_title, tls, settings.name)


class Sender(BackgroundLoop):
    """Sends due deliveries; `run_once` for one round, `start`/`stop` for the background thread."""

    name = "sender"
    more_at_once = True  # a full round may have left more due deliveries

    def __init__(self, db: Engine, settings: Settings) -> None:
        super().__init__()
        self.db = db
        self.settings = settings
        self.destinations = {d.name: destination_of(d, settings.network.ae_title) for d in settings.destinations}

    def interval_s(self) -> float:
        return self.settings.queue.poll_s

    def join_timeout_s(self) -> float:
        return 2 * self.settings.delivery.timeout_s  # an association in progress finishes

    def _record(self, delivery: DueDelivery, *, accepted: bool, status: int | None, detail: str) -> DeliveryStatus:
        """Store and log one attempt; `detail` is the error of a failed attempt, or the warning status of an
        accepted one (logged as a warning), empty for a plain success."""
        d = self.settings.delivery
        outcome = record_outcome(self.db, delivery, accepted=accepted, status_code=status, error=detail,
                                 retry_s=d.retry_s, retry_max_s=d.retry_max_s, max_attempts=d.max_attempts)
        level = logging.INFO if accepted and not detail else logging.WARNING
        logger.log(level, "%s %s to %s: %s%s", delivery.kind, delivery.sop_instance_uid, delivery.destination_name,
                   outcome.value, f" ({detail})" if detail else "")
        return outcome

    def _send_group(self, name: str, deliveries: list[DueDelivery]) -> None:
        destination = self.destinations.get(name)
        if destination is None:
            for delivery in deliveries:
                self._record(delivery, accepted=False, status=None,
                             detail=f"destination {name!r} is not in the configuration ([[destinations]])")
            return
        root = self.settings.storage.outputs
        by_path: dict[Path, list[DueDelivery]] = defaultdict(list)
        for delivery in deliveries:
            path = root / delivery.path
            if not path.is_file():
                self._record(delivery, accepted=False, status=None, detail=f"output file {delivery.path} is missing")
                continue
            by_path[path].append(delivery)
        if not by_path:
            return
        try:
            result = send_files(list(by_path), destination, timeout=self.settings.delivery.timeout_s)
        except DestinationError as exc:
            for group in by_path.values():
                for delivery in group:
                    self._record(delivery, accepted=False, status=None, detail=str(exc))
            return
        outcomes = {outcome.path: outcome for outcome in result.outcomes}
        for path, group in by_path.items():
            outcome = outcomes.get(path)
            for delivery in group:
                if outcome is None:
                    self._record(delivery, accepted=False, status=None, detail="not sent (no outcome)")
                elif outcome.ok:
                    warning = outcome.status_text if outcome.category == STATUS_WARNING else ""
                    self._record(delivery, accepted=True, status=outcome.status, detail=warning)
                else:
                    self._record(delivery, accepted=False, status=outcome.status,
                                 detail=f"{outcome.status_text} {outcome.error}".strip())

    def run_once(self) -> int:
        """Send what is due now; returns how many deliveries were attempted."""
        due = claim_due(self.db, hold_s=5 * self.settings.delivery.timeout_s)
        groups: dict[str, list[DueDelivery]] = defaultdict(list)
        for delivery in due:
            groups[delivery.destination_name].append(delivery)
        for name, deliveries in groups.items():
            self._send_group(name, deliveries)
        return len(due)
