"""The canary round trip on the event loop: send loops per relay, one watcher per mailbox, and
the bookkeeping that turns sends and arrivals into received, lost and late."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from exporter.canary.judge import judge
from exporter.canary.ledger import CanaryRecord, CanaryState
from exporter.canary.mailbox import MailboxStatus, MailboxWatcher
from exporter.canary.message import new_token
from exporter.canary.path import delivery_path
from exporter.canary.result import Arrival, CanarySent
from exporter.canary.send import send_canary
from exporter.canary.store import ArrivalReport, CanaryStore
from exporter.config import Config, MailboxConfig, RelayConfig
from exporter.headers import spam_scores
from exporter.smtp import token_source_for
from exporter.tasks import (
    LOOP_CLOCK,
    Clock,
    LagRecorder,
    cancel_and_wait,
    first_window,
    run_every,
)

__all__ = ["CanaryManager"]

log = logging.getLogger(__name__)

SendFn = Callable[..., Awaitable[CanarySent]]
EXPIRE_EVERY = 1.0


@dataclass
class _Sender:
    relay: RelayConfig
    task: asyncio.Task[None]


class CanaryManager:
    """Keeps one send loop per relay with a canary and one watcher per mailbox in step with
    the config; every arrival is matched to its send through the persisted state."""

    def __init__(self, store: CanaryStore, *, send: SendFn = send_canary,
                 clock: Clock = LOOP_CLOCK) -> None:
        self._store = store
        self._send = send
        self._clock = clock
        self._senders: dict[str, _Sender] = {}
        self._watchers: dict[str, tuple[MailboxConfig, MailboxWatcher]] = {}
        self._mailboxes: dict[str, MailboxConfig] = {}
        self._state: CanaryState | None = None
        self._state_key: tuple[str | None, str] | None = None
        self._old_state_saves: set[asyncio.Task[None]] = set()  # of ledgers replaced by apply()
        self._instance = "default"
        self._nameservers: tuple[tuple[str, int], ...] = ()
        self._dns_timeout: float | None = None
        self._sem = asyncio.Semaphore(8)
        self._expiry: asyncio.Task[None] | None = None
        # The first scheduled send starts at the relay's offset within this window (by
        # default first_window of the relays with a canary), or its interval if shorter.
        self.first_spread: float | None = None
        self._window = first_window(0)
        self.lag = LagRecorder()  # how late scheduled sends start
        # What is failing now, to log changes of state once: sends per relay (with their
        # reason), deliveries per (relay, mailbox).
        self._send_failing: dict[str, str | None] = {}
        self._lost_routes: set[tuple[str, str]] = set()
        self._pending: set[str] = set()
        self._early: dict[tuple[str, str], Arrival] = {}

    @property
    def state(self) -> CanaryState | None:
        return self._state

    def apply(self, config: Config) -> None:
        """Reconcile with a new config: state file, watchers, send loops."""
        loop = asyncio.get_running_loop()
        self._nameservers = config.dns.nameservers
        self._dns_timeout = config.dns.timeout
        self._instance = config.canary_instance
        key = (config.state_dir, config.canary_instance)
        if key != self._state_key:
            if self._state is not None:
                self._save_old_state(self._state)
            self._state = CanaryState(config.state_dir, instance=config.canary_instance)
            restored = self._state.load()
            if self._state.refused is not None:
                self._store.state_file_refused()
            if restored:
                log.info("canaries in flight restored", extra={"count": restored})
            self._state_key = key
            self._restart_all_watchers()
        state = self._state
        assert state is not None
        with_canary = [r for r in config.relays if r.canary is not None]
        state.forget_relays({r.name for r in with_canary})
        self._store.configure(
            [(r.name, t.mailbox) for r in with_canary for t in r.canary.to],  # type: ignore[union-attr]
            [(m.name, m.auth.oauth2 is not None) for m in config.mailboxes],
        )
        self._mailboxes = {m.name: m for m in config.mailboxes}
        self._apply_watchers(loop, config.mailboxes)
        self._apply_senders(with_canary)
        if self._expiry is None:
            self._expiry = asyncio.create_task(self._expire_loop(), name="canary:expire")

    def _save_old_state(self, state: CanaryState) -> None:
        """Finish writing a ledger apply() replaces; stop() waits for it."""
        task = asyncio.create_task(state.flush(), name="canary:old-state-save")
        self._old_state_saves.add(task)
        task.add_done_callback(self._old_state_saves.discard)

    def _restart_all_watchers(self) -> None:
        for _, watcher in self._watchers.values():
            watcher.stop(timeout=0)
        self._watchers.clear()

    def _apply_watchers(self, loop: asyncio.AbstractEventLoop,
                        mailboxes: tuple[MailboxConfig, ...]) -> None:
        wanted = {m.name: m for m in mailboxes}
        for name in list(self._watchers):
            config, watcher = self._watchers[name]
            if wanted.get(name) != config:
                watcher.stop(timeout=0)
                del self._watchers[name]
        for name, config in wanted.items():
            if name in self._watchers:
                continue
            watcher = MailboxWatcher(
                config, instance=self._instance, loop=loop, on_arrival=self._on_arrival,
                on_status=self._on_status,
                token_source=token_source_for(config.auth),
            )
            watcher.start()
            self._watchers[name] = (config, watcher)

    def _apply_senders(self, relays: list[RelayConfig]) -> None:
        wanted = {r.name: r for r in relays}
        self._window = (first_window(len(wanted)) if self.first_spread is None
                        else self.first_spread)
        for name in list(self._senders):
            if wanted.get(name) != self._senders[name].relay:
                self._senders.pop(name).task.cancel()
        for name, relay in wanted.items():
            if name not in self._senders:
                task = asyncio.create_task(self._send_loop(relay), name=f"canary:{name}")
                self._senders[name] = _Sender(relay, task)

    async def stop(self) -> None:
        tasks = [s.task for s in self._senders.values()]
        if self._expiry is not None:
            tasks.append(self._expiry)
        await cancel_and_wait(tasks)
        self._senders.clear()
        watchers = [w for _, w in self._watchers.values()]
        self._watchers.clear()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in watchers))
        if self._state is not None:
            await self._state.flush()
        await asyncio.gather(*self._old_state_saves)

    # -- sending -------------------------------------------------------------------------------

    async def _send_loop(self, relay: RelayConfig) -> None:
        canary = relay.canary
        assert canary is not None
        tokens = token_source_for(relay.auth)

        async def once(due: float) -> None:
            async with self._sem:
                self.lag.late(due, self._clock.now())
                await self.send_once(relay, token_source=tokens)

        await run_every(canary.interval, once, key=f"canary:{relay.name}",
                        first_spread=self._window, what="canary send", clock=self._clock)

    async def send_once(self, relay: RelayConfig, *, token_source: object = None) -> CanarySent:
        """Send one canary now and start watching for it.

        The canary is recorded before it is sent, so a crash mid-send loses nothing, and an
        arrival that beats the end of the SMTP session (a fast relay delivers before it
        answers the DATA) is held until the send time is known."""
        canary = relay.canary
        assert canary is not None
        state = self._state
        assert state is not None
        token = new_token(self._instance)
        now = time.time()
        state.add([
            CanaryRecord(token=token, relay=relay.name, mailbox=t.mailbox, address=t.address,
                         sent_at=now, deadline=now + canary.timeout + relay.timeout)
            for t in canary.to
        ])
        self._pending.add(token)
        try:
            await state.save()  # on disk before the send starts: a crash mid-send loses none
            result = await self._send(relay, canary, instance=self._instance,
                                      nameservers=self._nameservers,
                                      dns_timeout=self._dns_timeout,
                                      token_source=token_source, token=token)
        finally:
            self._pending.discard(token)
        self._store.sent(result)
        for target in canary.to:
            record = state.get(token, target.mailbox)
            if record is None:
                continue
            if result.sent_at is not None and target.address in result.accepted:
                state.update(replace(record, sent_at=result.sent_at,
                                     deadline=result.sent_at + canary.timeout,
                                     uncertain=result.uncertain))
            else:
                state.remove(token, target.mailbox)
                self._early.pop((token, target.mailbox), None)
        for target in canary.to:
            early = self._early.pop((token, target.mailbox), None)
            if early is not None:
                self._on_arrival(early)
        self._publish_state()
        for target in canary.to:
            entry = self._watchers.get(target.mailbox)
            if entry is not None:
                entry[1].wake()
        self._log_send(relay.name, result)
        return result

    def _log_send(self, relay: str, result: CanarySent) -> None:
        """A failed send at warning when the relay's sends were ok or failed otherwise, at
        debug when they keep failing the same way; the first success after that at info."""
        reason = result.reason.value if result.reason else None
        if result.success:
            if relay in self._send_failing:
                del self._send_failing[relay]
                log.info("canary send recovered", extra={"relay": relay})
        else:
            same = relay in self._send_failing and self._send_failing[relay] == reason
            self._send_failing[relay] = reason
            log.log(logging.DEBUG if same else logging.WARNING, "canary send failed", extra={
                "relay": relay, "reason": reason,
                "phase": result.failed_phase.value if result.failed_phase else None,
                "hint": result.hint, "cause": result.cause, "detail": result.detail,
                "reply": result.reply, "uncertain": result.uncertain})

    # -- arrivals, losses ----------------------------------------------------------------------

    def _on_arrival(self, arrival: Arrival) -> None:
        state = self._state
        if state is None:
            return
        if arrival.token in self._pending:  # seen before the relay finished answering
            self._early[(arrival.token, arrival.mailbox)] = arrival
            return
        record = state.remove(arrival.token, arrival.mailbox)
        if record is None:
            log.info("unknown canary removed", extra={"mailbox": arrival.mailbox,
                                                      "token": arrival.token})
            return
        report = self._judge(record, arrival)
        self._store.arrived(report)
        self._publish_state()
        route = (record.relay, record.mailbox)
        if not report.late and route in self._lost_routes:
            self._lost_routes.discard(route)
            log.info("canary delivery recovered", extra={"relay": record.relay,
                                                         "mailbox": record.mailbox})
        log.debug("canary late" if report.late else "canary received", extra={
            "relay": record.relay, "mailbox": record.mailbox, "folder": report.folder,
            "latency": round(report.latency, 3), "spf": report.verdicts.get("spf"),
            "dkim": report.verdicts.get("dkim"), "dmarc": report.verdicts.get("dmarc"),
            "hops": len(report.path.hops) if report.path else None,
            "unparsed_hops": report.path.parse_failures if report.path else None})

    def _judge(self, record: CanaryRecord, arrival: Arrival) -> ArrivalReport:
        mailbox = self._mailboxes.get(arrival.mailbox)
        trusted = mailbox.trusted_authserv_ids if mailbox else ()
        ar = [v for k, v in arrival.headers if k.lower() == "authentication-results"]
        arc = [v for k, v in arrival.headers if k.lower() == "arc-authentication-results"]
        sender = self._sender_domain(record.relay)
        verdicts = judge([*ar, *arc], trusted_authserv_ids=trusted, from_domain=sender)
        return ArrivalReport(
            relay=record.relay,
            mailbox=record.mailbox,
            token=record.token,
            folder=arrival.folder,
            folder_name=arrival.folder_name,
            sent_at=record.sent_at,
            seen_at=arrival.seen_at,
            latency=max(0.0, arrival.seen_at - record.sent_at),
            receiver_delay=(max(0.0, arrival.internal_date - record.sent_at)
                            if arrival.internal_date is not None else None),
            verdicts={"spf": verdicts.spf, "dkim": verdicts.dkim, "dmarc": verdicts.dmarc,
                      "arc": verdicts.arc},
            dmarc_aligned=verdicts.dmarc_aligned,
            dkim_domains=verdicts.dkim_domains,
            spf_domain=verdicts.spf_domain,
            trusted_header=verdicts.trusted_header,
            spam_scores=spam_scores(list(arrival.headers)),
            late=record.lost,
            path=delivery_path(arrival.headers, sent_at=record.sent_at,
                               internal_date=arrival.internal_date),
        )

    def _sender_domain(self, relay: str) -> str:
        sender = self._senders.get(relay)
        canary = sender.relay.canary if sender else None
        return canary.sender.rpartition("@")[2].lower() if canary else ""

    def _on_status(self, status: MailboxStatus) -> None:
        self._store.mailbox_status(
            status.mailbox, up=status.up, idle_supported=status.idle_supported,
            error=status.error, folders=status.folders, checked_at=status.checked_at,
            token_expiry=status.token_expiry)

    def _publish_state(self) -> None:
        state = self._state
        if state is None:
            return
        counts = Counter((r.relay, r.mailbox) for r in state.in_flight())
        self._store.set_in_flight(counts)
        self._store.state_errors(state.write_errors, state.last_error)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY)
            state = self._state
            if state is None:
                continue
            for record in state.expire(time.time()):
                self._store.lost(record.relay, record.mailbox)
                route = (record.relay, record.mailbox)
                level = logging.DEBUG if route in self._lost_routes else logging.WARNING
                self._lost_routes.add(route)
                log.log(level, "canary lost", extra={
                    "relay": record.relay, "mailbox": record.mailbox, "token": record.token,
                    "waited": round(record.deadline - record.sent_at, 1)})
            self._publish_state()
