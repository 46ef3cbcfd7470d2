"""The runtime: what channels and the CLI talk to.

It accepts messages (persisted, deduplicated and queued before anything else happens),
answers them through lanes and the runner, stops and resets sessions, and reports status.
All state lives in the store; this object holds only the work in flight in this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum, auto

from clawgate.channels.base import Sender
from clawgate.clock import Clock
from clawgate.domain import (
    DropReason,
    Fate,
    InboundMessage,
    ModelRef,
    NewInbound,
    QueueMode,
    QueuePatch,
    QueueSettings,
    Run,
    RunStatus,
    Session,
)
from clawgate.errors import ClawgateError, InvalidInput, UnknownSession
from clawgate.providers.base import Provider, estimate_tokens
from clawgate.providers.routing import ProviderEntry, Router, Trail
from clawgate.runtime import commands, compaction
from clawgate.runtime.bus import (
    EventBus,
    MessageDecided,
    RunChanged,
    RuntimeEvent,
    Subscription,
)
from clawgate.runtime.delivery import Deliverer
from clawgate.runtime.lanes import Lanes
from clawgate.runtime.owner import this_process
from clawgate.runtime.recovery import recover
from clawgate.runtime.runner import ReplySoFar, Runner
from clawgate.runtime.scope import Scope, ServeAll
from clawgate.runtime.settings import RuntimeSettings
from clawgate.runtime.status import StatusReport
from clawgate.runtime.stoppable import StoppableWork
from clawgate.runtime.stopping import StopReport, stop_and_wait, summaries_part
from clawgate.runtime.supervisor import Supervisor
from clawgate.store.protocol import Acceptance, ResetResult, StopOutcome, StopResult, Store

log = logging.getLogger(__name__)

#: What /compact answers when a stop of the session ended it.
STOPPED_COMPACTING = "compaction stopped; any summary it had written is kept"


class ShuttingDown(ClawgateError):
    def __init__(self) -> None:
        super().__init__("clawgate is shutting down and accepts no new messages")


class _State(Enum):
    NEW = auto()
    STARTED = auto()
    CLOSED = auto()


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What became of one message: its fate, the run that took it, and that run's reply."""

    message: InboundMessage
    run: Run | None
    reply: str


@dataclass(frozen=True, slots=True)
class CommandReply:
    text: str


class Runtime:
    def __init__(
        self, store: Store, providers: Mapping[str, Provider | ProviderEntry],
        settings: RuntimeSettings, *, scope: Scope | None = None, clock: Clock | None = None,
        senders: Sequence[Sender] = (), name: str = "clawgate",
    ) -> None:
        """``name`` says which program this is (``the gateway``, ``clawgate agent``), for
        the record of runs it leaves unfinished when it shuts down."""
        self.store = store
        self.settings = settings
        self.clock = clock or store.clock
        entries = {name: p if isinstance(p, ProviderEntry) else ProviderEntry.single(p)
                   for name, p in providers.items()}
        self.router = Router(entries, store, self.clock, settings.routing)
        self.owner = this_process(self.clock.now())
        self.bus = EventBus()
        self._scope = scope or ServeAll()
        self._shut_down = f"{name} (pid {self.owner.pid}) shut down"
        self._runner = Runner(store, self.router, settings, self.owner.id, self.bus, self.clock,
                              shut_down=self._shut_down)
        self._deliverer = Deliverer(store, senders, self.clock)
        self._lanes = Lanes(store, self._runner, settings, self.owner.id, self._scope,
                            self.clock, after_run=self._deliverer.kick)
        self._supervisor = Supervisor(
            store, self._runner, self._lanes, self._scope, settings, self.owner, self.clock,
            self._deliverer,
        )
        self._stoppable = StoppableWork()  # a /compact in progress, which stop ends
        self._loop: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Task[None]] = set()  # withdrawals under way
        self._preparing: asyncio.Task[None] | None = None
        self._state = _State.NEW

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, supervise: bool = True) -> None:
        """Register, recover orphaned runs, pick up waiting work, start supervising.

        With ``supervise=False`` nothing runs in the background; call ``tick`` to advance.
        """
        if self._state is not _State.NEW:
            raise RuntimeError(f"cannot start a runtime that is {self._state.name.lower()}")
        self._state = _State.STARTED
        await self.store.register_owner(self.owner)
        await recover(self.store, self.owner)
        # The providers' SDKs load in a worker thread, in the background: a first turn waits
        # for that instead of freezing the event loop (and every other session) for a second.
        self._preparing = asyncio.create_task(self.router.prepare(),
                                              name="clawgate providers setup")
        if supervise:
            self._loop = asyncio.create_task(self._supervisor.run(), name="clawgate supervisor")
        else:
            await self.tick()

    async def tick(self) -> None:
        await self._supervisor.tick()

    async def close(self, grace: float | None = None) -> None:
        """Stop taking work, let turns in flight finish for ``grace`` s, then interrupt them.

        Messages still waiting their turn are not taken up: they stay waiting in the store,
        and the next runtime to serve their session answers them.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._lanes.stop_claiming()  # waiting messages stay waiting, for the next start
        if self._chores:
            await asyncio.wait(set(self._chores))
        for task in (self._loop, self._preparing):
            if task is not None:
                task.cancel()
                await asyncio.wait({task})
        await self._lanes.drain(self.settings.shutdown_grace if grace is None else grace)
        await self._deliverer.drain()
        await self.router.aclose()
        try:
            # A lane cancelled mid-claim can leave a run it never started: end it now.
            await self.store.recover_owner(self.owner.id,
                                           f"{self._shut_down} before the run started")
            await self.store.retire_owner(self.owner.id)
        except ClawgateError as exc:
            log.warning("could not retire owner %s: %s", self.owner.id, exc)

    def hurry(self) -> None:
        """Cut ``close``'s grace period short: turns in flight end interrupted now."""
        self._lanes.hurry()

    def abandon(self) -> None:
        """Drop all work in flight without recording anything, as a crashed process would.

        The store is untouched; the leases of this runtime's runs simply stop being renewed.
        """
        self._state = _State.CLOSED
        for task in (self._loop, self._preparing):
            if task is not None:
                task.cancel()
        self._lanes.abandon()

    # --- messages --------------------------------------------------------------------

    async def send(
        self, key: str, text: str, *, channel: str = "cli",
        channel_message_id: str | None = None, sender: str | None = None,
        reply_to: str | None = None,
    ) -> Acceptance:
        """Persist a message and see that it is answered (the queue mode decides how).

        ``reply_to`` is where ``channel`` pushes replies; they then go through the outbox.
        """
        self._require_started()
        acceptance = await self.store.accept_inbound(
            key, NewInbound(channel, text, channel_message_id, sender, reply_to),
            self.settings.queue,
        )
        if acceptance.duplicate:
            self.sent_again(acceptance.message)
            return acceptance
        for dropped in acceptance.dropped:
            self.bus.publish(MessageDecided(key, dropped))
        if acceptance.message.fate is Fate.PENDING:
            self._scope.accepted(acceptance.session.id, acceptance.message.id)
        if acceptance.active_run is not None:
            await self._behind_active_run(acceptance, acceptance.active_run)
        self._lanes.kick(acceptance.session.id)
        return acceptance

    def sent_again(self, message: InboundMessage) -> None:
        """A message its channel sent again (a repeated id, a retried request): nothing is
        stored twice, and one still waiting is seen to, for the process it was first sent to
        may have died (its run, if any, is recovered first)."""
        self._require_started()
        if message.fate is Fate.PENDING:
            self._scope.accepted(message.session_id, message.id)
            self._supervisor.recover_soon()
            self._lanes.kick(message.session_id)

    async def _behind_active_run(self, acceptance: Acceptance, run: Run) -> None:
        """A message came during ``run``: in interrupt mode (the run's), it stops the run."""
        if run.lease_expires_at <= self.clock.now() or run.owner_id != self.owner.id:
            self._supervisor.recover_soon()  # its owner may be gone: look at once
        if acceptance.queue_mode(self.settings.queue) is QueueMode.INTERRUPT:
            result = await self.store.request_stop(
                run.session_id, RunStatus.INTERRUPTED, clear_queue=False
            )
            if result.outcome is StopOutcome.SIGNALLED and result.run is not None:
                self._runner.stop(result.run.id, RunStatus.INTERRUPTED,
                                  "interrupted by a newer message")

    async def handle(
        self, key: str, text: str, *, channel: str = "cli",
        channel_message_id: str | None = None, sender: str | None = None,
    ) -> CommandReply | Acceptance:
        """A line typed into a chat: a command is carried out, anything else is sent."""
        command = commands.parse(text)
        if command is None:
            return await self.send(
                key, text, channel=channel, channel_message_id=channel_message_id, sender=sender
            )
        return CommandReply(await self.execute(key, command))

    async def execute(self, key: str, command: commands.Command) -> str:
        match command:
            case commands.Stop():
                return (await self.stop(key)).describe()
            case commands.Reset():
                try:
                    return describe_reset(await self.reset(key))
                except UnknownSession:  # nothing said yet: it is already a fresh one
                    return (f"session {key!r} has no conversation yet; your next message "
                            "starts a fresh one")
            case commands.Status():
                return (await self.status(key)).describe()
            case commands.Help():
                return commands.HELP
            case commands.ShowQueue():
                return describe_queue((await self.status(key)).queue)
            case commands.SetQueue(patch):
                return "queue: " + describe_queue(await self.set_queue(key, patch))
            case commands.ShowModel():
                return await self.describe_models(key)
            case commands.SetModel(name):
                session = await self.set_model(key, name)
                return f"model: {session.model} (for this session, from the next reply)"
            case commands.Compact():
                return await self.compact(key)

    async def wait_for(self, message_id: str, within: float | None = None) -> MessageOutcome:
        """Wait until a message has its fate and, if a run took it, that run has ended.

        Local runs are followed through the bus; the store is looked at first, and again
        every poll interval, for runs in other processes.
        """
        deadline = None if within is None else time.monotonic() + within
        message = await self.store.get_message(message_id)
        if message is None:
            raise InvalidInput(f"no message with id {message_id!r}")
        session_id = message.session_id
        subscription = self.bus.subscribe(session_id=session_id)
        try:
            message, outcome = await self._outcome(message_id)
            while outcome is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"message {message_id} was not answered in {within}s")
                wait = self.settings.poll_interval
                event = await _next_event(subscription, min(wait, remaining or wait))
                if event is None:  # a quiet interval, or we fell behind: ask the store
                    if subscription.closed:
                        subscription = self.bus.subscribe(session_id=session_id)
                    message, outcome = await self._outcome(message_id)
                elif isinstance(event, MessageDecided) and event.message.id == message_id:
                    message = event.message
                    if message.run_id is None:
                        outcome = MessageOutcome(message, None, "")
                elif (isinstance(event, RunChanged) and event.run.id == message.run_id
                      and event.run.status.terminal):
                    reply = await self.store.run_reply(event.run.id)
                    outcome = MessageOutcome(message, event.run, reply)
            return outcome
        finally:
            subscription.close()

    async def _outcome(
        self, message_id: str
    ) -> tuple[InboundMessage, MessageOutcome | None]:
        """The message as stored now, and its outcome if it has one yet."""
        message = await self.store.get_message(message_id)
        if message is None:
            raise InvalidInput(f"no message with id {message_id!r}")
        if message.fate is Fate.PENDING:
            return message, None
        if message.run_id is None:
            return message, MessageOutcome(message, None, "")
        run = await self.store.get_run(message.run_id)
        if run is None or not run.status.terminal:
            return message, None
        return message, MessageOutcome(message, run, await self.store.run_reply(run.id))

    # --- session control -------------------------------------------------------------

    async def stop(self, key: str) -> StopReport:
        """Stop the key's run and clear its waiting messages; accepted in every state, even
        before the session's first message (then there is nothing to stop)."""
        session = await self.store.get_session(key)
        if session is None:
            return StopReport.nothing(key)

        def cancel_here(run: Run) -> None:
            self._runner.stop(run.id, RunStatus.KILLED, "stopped by request")

        patience = self.settings.lease.total_seconds() + 5
        compacting = await self._stoppable.stop(key, patience)
        report = await stop_and_wait(
            self.store, key, session.id, self.clock, self.settings.poll_interval,
            patience=patience, on_signalled=cancel_here, pause=lambda: self._pause(key),
        )
        return replace(report, compaction_stopped=compacting)

    def stop_run(self, run_id: str, reason: str) -> bool:
        """End a run this process is executing (``killed``, with ``reason``); False if it
        is not one of this process's runs. Waiting messages are left as they are."""
        return self._runner.stop(run_id, RunStatus.KILLED, reason)

    def withdraw(self, key: str, message_id: str, reason: str) -> None:
        """Its sender no longer wants the message answered (a streaming client left): one
        still waiting is dropped (``stopped``); one a run of this process took has that run
        stopped with ``reason``, as ``stop_run`` does, if the message is all the run took.
        A run that answers other messages too (collected or steered into it) goes on for
        them. It happens in the background (the caller may be being cancelled); ``close``
        waits for it."""
        task = asyncio.create_task(self._withdraw(key, message_id, reason),
                                   name=f"clawgate withdraw {message_id}")
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _withdraw(self, key: str, message_id: str, reason: str) -> None:
        try:
            dropped = await self.store.drop_waiting(message_id, DropReason.STOPPED)
            if dropped is not None:
                self.bus.publish(MessageDecided(key, dropped))
                return
            message = await self.store.get_message(message_id)
            if message is None or message.run_id is None:
                return
            taken = await self.store.run_messages(message.run_id)
            if all(m.id == message_id for m in taken):  # nobody else waits for its reply
                self.stop_run(message.run_id, reason)
        except ClawgateError as exc:
            log.warning("could not withdraw message %s: %s", message_id, exc)

    async def reset(self, key: str) -> ResetResult:
        """Archive the key's session and open a fresh one (raises UnknownSession).

        A session with no messages yet is already fresh: it is left as it is, so a reset
        sent twice (a retried request) starts one fresh conversation, not two.
        """
        session = await self._session(key)
        if not await self.store.list_inbound(session.id, 1):
            return ResetResult(old=session, new=session, stop=StopResult(StopOutcome.NO_RUN))
        result = await self.store.reset_session(key)
        run = result.stop.run
        if result.stop.outcome is StopOutcome.SIGNALLED and run is not None:
            self._runner.stop(run.id, RunStatus.KILLED, "stopped: the session was reset")
        for dropped in result.stop.dropped:
            self.bus.publish(MessageDecided(key, dropped))
        return result

    async def delete(self, key: str) -> StopResult:
        """Retire a session: its run is stopped, waiting messages dropped, history kept."""
        result = await self.store.archive_session(key)
        if result.outcome is StopOutcome.SIGNALLED and result.run is not None:
            self._runner.stop(result.run.id, RunStatus.KILLED, "stopped: the session was deleted")
        for dropped in result.dropped:
            self.bus.publish(MessageDecided(key, dropped))
        return result

    async def set_model(self, key: str, model: str | ModelRef) -> Session:
        """Switch a session's model (an alias or ``provider/model``), field-level."""
        return await self.store.set_model(key, self.router.resolve(str(model)))

    async def describe_models(self, key: str) -> str:
        session = await self.store.get_session(key)
        current = (session.model if session else None) or self.settings.default_model
        chain = self.router.chain(current)
        aliases = ", ".join(f"{a} = {m}" for a, m in sorted(self.router.policy.aliases.items()))
        lines = [f"model: {current}",
                 f"fallbacks: {', '.join(str(m) for m in chain[1:]) or 'none'}",
                 f"aliases: {aliases or 'none'}"]
        return "\n".join(lines)

    async def compact(self, key: str) -> str:
        """Summarise the session's older turns now (refused while a reply is running); a
        stop of the session ends it."""
        if self._stoppable.busy(key):
            raise InvalidInput("the session is being compacted already")
        said = await self._stoppable.run(key, self._compact(key))
        return STOPPED_COMPACTING if said is None else said

    async def _compact(self, key: str) -> str:
        summary = await self.store.summarize_session(key)
        if summary is None:
            raise UnknownSession(key)
        if summary.latest_run is not None and summary.latest_run.status.active:
            raise InvalidInput("a reply is in progress; /compact once it has ended")
        session = summary.session
        chain = self.router.chain(session.model or self.settings.default_model)
        entries = await self.store.conversation(
            session.id, compaction.reading(self.settings.context_entries))
        budget = compaction.for_model(
            self.router, chain[0], self.settings.system_prompt, self.settings.context_entries)
        if compaction.only_summaries(entries, replace(budget, keep=0)):
            return "nothing new to compact since the last summary"
        covered, text = 0, ""
        async for made in compaction.summarize(
                self.router, chain, entries, replace(budget, keep=0), Trail()):
            await self.store.append_summary(
                session.id, made.text, made.covers_through, made.usage)
            covered, text = covered + made.covered, made.text
        if not covered:
            return "nothing to compact yet"
        noun = "entry" if covered == 1 else "entries"
        return (f"compacted {covered} earlier {noun} into a summary of about "
                f"{estimate_tokens(text)} tokens")

    async def set_queue(self, key: str, patch: QueuePatch) -> QueueSettings:
        """Change the key's queue settings; messages already waiting out a quiet time are
        held to the new ones at once (``debounce:0`` or interrupt mode: no more waiting)."""
        session = await self.store.set_queue(key, patch)
        if self._state is _State.STARTED:
            self._lanes.kick(session.id)
        return session.effective_queue(self.settings.queue)

    async def status(self, key: str) -> StatusReport:
        """The key's session as /status shows it (before its first message too)."""
        summary = await self.store.summarize_session(key)
        if summary is None:
            return StatusReport(key, None, self.settings.default_model, self.settings.queue,
                                here=False)
        return StatusReport(
            key,
            summary=summary,
            model=summary.session.model or self.settings.default_model,
            queue=summary.session.effective_queue(self.settings.queue),
            here=summary.latest_run is not None and summary.latest_run.id in self._runner.held,
        )

    def reply_so_far(self, session_id: str) -> ReplySoFar | None:
        """The reply being streamed in this process for the session, not yet stored."""
        return self._runner.reply_so_far(session_id)

    def subscribe(self, key: str | None = None) -> Subscription:
        return self.bus.subscribe(key)

    # --- helpers ---------------------------------------------------------------------

    async def _session(self, key: str) -> Session:
        session = await self.store.get_session(key)
        if session is None:
            raise UnknownSession(key)
        return session

    def _require_started(self) -> None:
        if self._state is _State.CLOSED:
            raise ShuttingDown()
        if self._state is _State.NEW:
            raise RuntimeError("start the runtime before sending messages")

    async def _pause(self, key: str | None) -> None:
        """Wait for news about a session (a local event), or one poll interval."""
        subscription = self.bus.subscribe(key)
        try:
            async with asyncio.timeout(self.settings.poll_interval):
                await subscription.get()
        except TimeoutError:
            pass
        finally:
            subscription.close()


async def _next_event(subscription: Subscription, wait: float) -> RuntimeEvent | None:
    """The next event, or None after ``wait`` seconds without one (or a closed feed)."""
    try:
        async with asyncio.timeout(wait):
            return await subscription.get()
    except TimeoutError:
        return None


def describe_queue(queue: QueueSettings) -> str:
    return (f"{queue.mode} (debounce {queue.debounce_ms} ms, cap {queue.cap}, "
            f"drop {queue.drop})")


def describe_reset(result: ResetResult) -> str:
    if result.already_fresh:
        return (f"session {result.new.key!r} is already fresh (nothing was said since it "
                "started); nothing changed")
    stopped = ""
    if result.stop.run is not None:
        stopped = f"; stopped run {result.stop.run.id}"
    dropped = len(result.stop.dropped)
    if dropped:
        stopped += (f"; dropped {dropped} waiting message{'s' if dropped != 1 else ''}"
                    f"{summaries_part(result.stop)}")
    return (f"new session {result.new.id} for {result.new.key!r} (the previous one, "
            f"{result.old.id}, is kept{stopped})")
