"""``clawgate models list`` and ``clawgate models test [ref]``.

``test`` sends one tiny request through every auth profile of the model's provider and says,
for each, how long the first token took and what came back, or exactly what failed. It does
not rest a failing key (it is a test), but a key that answers is forgiven its cooldown (and
that model's on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from clawgate.cli.common import OK, PROBLEM, open_app
from clawgate.cli.remote import warn_if_changed
from clawgate.cli.rows import table
from clawgate.clock import SystemClock
from clawgate.config import Settings
from clawgate.domain import ModelRef, preview
from clawgate.errors import ProviderError
from clawgate.providers.base import ChatMessage, ChatRole, ModelRequest, Provider, TextDelta
from clawgate.providers.routing import Router
from clawgate.views import model_listing

PROBE = "Reply with the single word: OK"


async def main(args: argparse.Namespace, settings: Settings) -> int:
    warn_if_changed(settings)  # what is shown here is not what a running gateway uses
    async with open_app(settings) as app:
        router = Router(app.providers, app.store, SystemClock(), settings.runtime.routing)
        try:
            if args.action == "list":
                rows = model_listing(settings, await router.cooldowns())
                print(json.dumps(rows, indent=2) if args.json else _list_text(rows))
                return OK
            model = router.resolve(args.ref) if args.ref else settings.runtime.default_model
            results = [await _probe(model, name, adapter, args.timeout)
                       for name, adapter in router.providers[model.provider].profiles]
            for result in results:
                if result["ok"]:
                    await app.store.clear_cooldown(
                        f"{model.provider}:{result['profile']}", model.model)
            print(json.dumps(results, indent=2) if args.json else _test_text(results))
            return OK if any(r["ok"] for r in results) else PROBLEM
        finally:
            await router.aclose()


async def _probe(model: ModelRef, profile: str, adapter: Provider, deadline: float
                 ) -> dict[str, Any]:
    """One tiny request, given up after ``deadline`` seconds; the clock starts once the
    adapter is set up (the SDK imported, the client built), so the figures are the
    provider's, the same for every profile."""
    request = ModelRequest(model.model, (ChatMessage(ChatRole.USER, PROBE),), 16)
    result: dict[str, Any] = {"model": str(model), "profile": profile}
    try:
        await adapter.prepare()
        started = time.perf_counter()
        async with asyncio.timeout(deadline):
            first, text = await _first_and_text(adapter, request, started)
    except ProviderError as exc:
        return {**result, "ok": False, "error": str(exc), "errorKind": exc.kind}
    except TimeoutError:
        return {**result, "ok": False, "errorKind": "timeout",
                "error": f"no complete answer within {deadline:g} s (--timeout sets how long "
                         "to wait)"}
    total = time.perf_counter() - started
    return {**result, "ok": True, "firstTokenMs": round((first or total) * 1000),
            "totalMs": round(total * 1000), "reply": preview(text, 60)}


async def _first_and_text(adapter: Provider, request: ModelRequest, started: float
                          ) -> tuple[float | None, str]:
    """Seconds from ``started`` to the first words (None if none came), and the reply."""
    first: float | None = None
    text: list[str] = []
    async for event in adapter.stream(request):
        if isinstance(event, TextDelta):
            first = first if first is not None else time.perf_counter() - started
            text.append(event.text)
    return first, "".join(text)


def _list_text(listing: dict[str, Any]) -> str:
    rows = []
    for provider in listing["providers"]:
        profiles = "; ".join(_profile_text(p) for p in provider["profiles"])
        rows.append([provider["name"], provider["kind"], provider["baseUrl"] or "-",
                     profiles, ", ".join(provider["models"]) or "-"])
    aliases = ", ".join(f"{a} = {m}" for a, m in listing["aliases"].items()) or "none"
    return "\n".join([
        table(rows, ["PROVIDER", "KIND", "ENDPOINT", "PROFILES", "MODELS"]), "",
        f"default    {listing['default']}",
        f"fallbacks  {', '.join(listing['fallbacks']) or 'none'}",
        f"aliases    {aliases}",
    ])


def _profile_text(profile: dict[str, Any]) -> str:
    key = (f"{profile['keySource']}: {profile['key']}" if profile["keySource"] != "none"
           else "no key needed")
    text = f"{profile['name']} ({key})"
    if profile.get("restingUntil"):
        text += f" resting until {profile['restingUntil']} ({profile['restReason']})"
    for rest in profile.get("restingModels", ()):
        text += f", {rest['model']} resting until {rest['until']} ({rest['reason']})"
    return text


def _test_text(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        head = f"{r['model']} via {r['profile']}: "
        if r["ok"]:
            lines.append(head + f"first token {r['firstTokenMs']} ms, done {r['totalMs']} ms, "
                                f"said {r['reply']!r}")
        else:
            lines.append(head + f"FAILED ({r['errorKind']}): {r['error']}")
    return "\n".join(lines)
