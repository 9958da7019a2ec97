"""The ``tool-worker`` command: run, demo, simulate, tools list|schema|sync, check-config."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
import traceback
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog

from worker import __version__
from worker.api.backends import auth_hint, build_profile
from worker.api.client import ApiClient
from worker.check_config import report_config
from worker.config.loading import load_config
from worker.config.secret_files import secret_file_warnings
from worker.daemon import Worker
from worker.errors import AuthError, ConfigError, NotFound, ResourceError, WorkerError
from worker.handlers.assistant_sync import sync_assistant
from worker.handlers.registry import Registry
from worker.observability.logs import configure_logging
from worker.observability.metrics import Metrics
from worker.observability.redaction import redact_text
from worker.simulator.run_script import RUN_SCRIPT_HELP

if TYPE_CHECKING:
    from worker.config.settings import Settings
    from worker.simulator import FaultPlan

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_AUTH = 0, 1, 2, 3
# A shutdown that left rounds unsubmitted (second signal, or the drain timeout ran out):
# EX_TEMPFAIL, "try again later". Nothing is lost, a restarted worker takes those rounds,
# but supervisors and whoever reads the exit status see that the drain did not finish.
EXIT_ABANDONED = 75
# Idle anyio worker threads (the one /metrics was rendered in, say) are told to stop when the
# event loop ends; this long is plenty for them to go. Busy ones are handlers that overran.
_THREAD_EXIT_GRACE_S = 1.0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, and return the exit code."""
    args = _parser().parse_args(argv)
    _search_current_directory()
    try:
        try:
            return int(args.handler(args))
        except BaseExceptionGroup as group:
            # A task group wraps a start-up failure (a busy port, a refused key); the one
            # error inside gets its one line and exit code, not a traceback of the group.
            raise _sole_error(group) from None
    except ConfigError as exc:
        _say(f"tool-worker: configuration error: {exc}")
        return EXIT_CONFIG
    except ResourceError as exc:
        _say(f"tool-worker: {exc}")
        return EXIT_CONFIG
    except AuthError as exc:
        _say(_auth_error_line(exc, getattr(args, "settings", None)))
        return EXIT_AUTH
    except WorkerError as exc:
        _say(f"tool-worker: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug of ours: said redacted, with its traceback
        # A bug of ours: one line first, so the cause is readable, then the traceback
        # (redacted too: a frame's text may hold a key).
        _say(f"tool-worker: unexpected error: {type(exc).__name__}: {exc}")
        _say(traceback.format_exc().rstrip())
        return EXIT_FAILURE


def _say(line: str) -> None:
    """An exit message on stderr, through the same redaction as the logs: an API that refuses
    the key may quote it, and the error carries the API's text."""
    print(redact_text(line), file=sys.stderr)


def _search_current_directory() -> None:
    """Put the current directory first on the import path, as ``python -m`` does.

    A console script's path starts with its own bin folder instead, so ``[tools] modules =
    ["mypkg.tools"]`` would not find ./mypkg when run from the project folder.
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one WorkerError or KeyboardInterrupt inside nested groups; else the group itself."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, WorkerError | KeyboardInterrupt) else group


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool-worker", description=(
        "Execute the function tool calls of Assistants API runs and Agents API sessions."))
    parser.add_argument("--version", action="version", version=f"tool-worker {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the worker daemon")
    _add_config(run)
    run.add_argument("--once", action="store_true",
                     help="exit when no watched thread has an active run")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate the config and import the tools")
    _add_config(check)
    check.add_argument("--no-api", action="store_true",
                       help="do not ask the API (by default a few watched threads are read)")
    check.add_argument("--example", action="store_true",
                       help="print the example config: every key, its default and what it does")
    check.set_defaults(handler=_check_config)

    _add_tools_commands(commands.add_parser("tools", help="inspect the registered tools"))
    _add_simulate_options(commands.add_parser(
        "simulate", help="serve the built-in fake Assistants API",
        description="Serve a fake Assistants API (and Agents API) whose scripted model makes "
                    "tool calls. Assistants runs: " + RUN_SCRIPT_HELP + ".",
    ))

    demo = commands.add_parser("demo", help="the worker against the simulator, with the ready-made tools")
    demo.add_argument("--runs", type=int, default=24,
                      help="how many runs (Agents API sessions) to process")
    demo.add_argument("--protocol", choices=("assistants", "agents"), default="assistants",
                      help="Assistants runs, or OpenAI Agents API sessions (backend = agents)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--port", type=int, default=9464,
                      help="the status page's port (0: any free one)")
    demo.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                      help="keep the status page open this long after the demo")
    demo.set_defaults(handler=_demo)
    return parser


def _add_tools_commands(tools: argparse.ArgumentParser) -> None:
    tools_commands = tools.add_subparsers(dest="tools_command", required=True, metavar="ACTION")
    for name, handler, text in (
        ("list", _tools_list, "list the registered tools"),
        ("schema", _tools_schema, "print the tools array in the Assistants API format"),
    ):
        sub = tools_commands.add_parser(name, help=text)
        _add_config(sub)
        sub.set_defaults(handler=handler)
    sync = tools_commands.add_parser(
        "sync", help="make an assistant's function tools match the registered ones")
    _add_config(sync)
    sync.add_argument("--assistant", required=True, metavar="ASSISTANT_ID",
                      help="the assistant to update, like asst_abc123")
    sync.add_argument("--dry-run", action="store_true", help="show the differences, change nothing")
    sync.set_defaults(handler=_tools_sync)


def _add_simulate_options(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "sk-sim"),
                          help="the key clients must send (default: $OPENAI_API_KEY or sk-sim)")
    simulate.add_argument("--thinking-s", type=float, default=0.0,
                          help="model 'thinking' time between a submission and the next round")
    simulate.add_argument("--latency-s", type=float, default=0.0, help="added to every answer")
    simulate.add_argument("--profile", choices=("openai", "azure"), default="openai",
                          help="serve /v1 with bearer keys, or an Azure Agent Service project")
    simulate.add_argument("--project", default="sim-project", help="the azure profile's project")
    simulate.add_argument("--quirk", action="append", default=[], metavar="NAME",
                          help="behave like another compatible server (repeatable): "
                               "see worker.simulator.QUIRKS")
    simulate.add_argument("--poll-hints", choices=("exact", "coarse", "off"), default="exact",
                          help="the openai-poll-after-ms header: exact, a fixed 1000 ms, or none")
    simulate.add_argument("--spec", type=Path, default=None, metavar="FILE",
                          help="refuse request bodies that do not match this OpenAPI document")
    _add_agents_options(simulate)
    simulate.set_defaults(handler=_simulate)


def _add_agents_options(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument(
        "--protocol", choices=("assistants", "agents"), default="assistants",
        help="the API the start line explains (the openai profile serves both): Assistants "
             "runs, or Agents API sessions (POST /agents/sessions; each session's "
             "metadata['sim_turns'] scripts its turns of function calls, see --turns)")
    simulate.add_argument(
        "--turns", metavar="JSON", default=None,
        help='the turns of an Agents API session created without metadata["sim_turns"]: '
             'a JSON list of turns, each a list of calls like [[{"name": "echo", '
             '"arguments": {"text": "hi"}}]] (default: each function tool of the agent once)')
    simulate.add_argument("--user-pause-s", type=float, default=0.0,
                          help="how long a session stays idle before its next scripted turn")
    simulate.add_argument("--webhook-url", default=None, metavar="URL",
                          help="POST a Standard-Webhooks-signed agent.session.action_required "
                               "here whenever a session needs action (secret: "
                               "$OPENAI_WEBHOOK_SECRET, like whsec_<base64>)")
    simulate.add_argument("--fault-rate", type=float, default=0.0, metavar="P",
                          help="refuse (429, 5xx) or lose (connection dropped before or after "
                               "the answer) this share of requests, e.g. 0.1")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=None, metavar="FILE",
                        help="TOML configuration (`tool-worker check-config --example` prints one)")


def _load(args: argparse.Namespace, *, require_api_key: bool) -> tuple[Settings, Registry]:
    settings = load_config(args.config, require_api_key=require_api_key)
    args.settings = settings  # for main's one-line errors
    return settings, Registry.discover(settings.tools.modules)


def _auth_error_line(exc: AuthError, settings: Settings | None) -> str:
    entra = settings is not None and settings.api.backend == "azure" \
        and settings.api.azure_auth == "entra"
    what = "Entra ID token" if entra else "key"
    hint = f"; {auth_hint(settings.api)}" if settings is not None else ""
    return f"tool-worker: the API refused the {what}: {exc}{hint}"


def _run(args: argparse.Namespace) -> int:
    settings, registry = _load(args, require_api_key=True)
    fmt = settings.logging.format
    configure_logging(json=None if fmt == "auto" else fmt == "json", level=settings.logging.level,
                      secrets=settings.secret_values())
    for warning in secret_file_warnings(settings):
        structlog.get_logger("worker.cli").warning("a secret file is not kept safe",
                                                   problem=warning)
    worker = Worker(settings, registry, metrics=Metrics(process_metrics=True))
    anyio.run(lambda: worker.run(until_idle=args.once))
    code = EXIT_ABANDONED if worker.abandoned_runs else EXIT_OK
    if code != EXIT_OK:
        structlog.get_logger("worker.cli").error(
            f"exiting with status {code}: the shutdown left rounds unsubmitted",
            runs=worker.abandoned_runs, exit_code=code)
    _exit_without_waiting_for_handlers(code)
    return code


def _exit_without_waiting_for_handlers(code: int) -> None:
    """Leave now, with ``code``, if sync handlers that ignored their timeout still hold threads.

    Python joins every non-daemon thread at exit, so one stuck handler would hold the
    process (and a SIGTERM'd pod) forever; its round was already answered or abandoned.
    """
    stuck = _busy_threads(time.monotonic() + _THREAD_EXIT_GRACE_S)
    if stuck:
        structlog.get_logger("worker.cli").warning(
            "exiting without waiting for handler threads still running", threads=len(stuck))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _busy_threads(deadline: float) -> list[threading.Thread]:
    """Non-daemon threads still running at ``deadline``; idle pool threads end before it."""
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon]
    for thread in others:
        thread.join(max(deadline - time.monotonic(), 0))
    return [t for t in others if t.is_alive()]


def _check_config(args: argparse.Namespace) -> int:
    if args.example:
        # Package data, so an installed wheel has it as well as a checkout.
        print(resources.files("worker.config").joinpath("example.toml").read_text("utf-8"), end="")
        return EXIT_OK
    settings, registry = _load(args, require_api_key=True)
    report_config(settings, registry, str(args.config or "defaults"), ask_api=not args.no_api)
    return EXIT_OK


def _tools_list(args: argparse.Namespace) -> int:
    _, registry = _load(args, require_api_key=False)
    width = max((len(t.name) for t in registry), default=0)
    for spec in registry:
        print(f"{spec.name:<{width}}  {spec.description}")
        if spec.signature.strict_problem is not None:
            print(f"{'':<{width}}  (not strict: {spec.signature.strict_problem})")
        if spec.signature.resources:
            names = ", ".join(param for param, _ in spec.signature.resources)
            print(f"{'':<{width}}  (resources: {names})")
    resources = registry.resources()
    if resources:
        print("\nresources, started in this order and closed in reverse:")
        for found in resources:
            print(f"  {found.name}  {found.type_name}  ({found.origin})")
    return EXIT_OK


def _tools_schema(args: argparse.Namespace) -> int:
    _, registry = _load(args, require_api_key=False)
    print(json.dumps([spec.to_openai() for spec in registry], indent=2))
    return EXIT_OK


def _tools_sync(args: argparse.Namespace) -> int:
    settings, registry = _load(args, require_api_key=True)

    async def sync() -> int:
        profile = build_profile(settings.api, settings.api_key)
        async with ApiClient(profile, settings.api, Metrics()) as client:
            try:
                plan = await sync_assistant(client, args.assistant, registry, dry_run=args.dry_run)
            except NotFound:
                _say(f"tool-worker: assistant {args.assistant!r} not found at "
                     f"{settings.api.base_url}; check the id and the key's project")
                return EXIT_FAILURE
        print("\n".join(plan.describe()))
        if plan.in_sync:
            print(f"in sync: {len(plan.unchanged)} function tool(s)")
        elif args.dry_run:
            print("dry run: the assistant was not changed")
        else:
            print(f"updated {plan.assistant_id}")
        return EXIT_OK

    return anyio.run(sync)


def _simulate(args: argparse.Namespace) -> int:
    from worker.simulator import SCRIPT_HELP, Simulator

    configure_logging(level="info")
    if args.protocol == "agents" and args.profile != "openai":
        raise ConfigError("--protocol agents needs --profile openai (Azure has no Agents API)")
    try:
        simulator = Simulator(api_key=args.api_key, thinking_s=args.thinking_s,
                              latency_s=args.latency_s, profile=args.profile, project=args.project,
                              quirks=args.quirk, poll_hints=args.poll_hints, spec=args.spec,
                              user_pause_s=args.user_pause_s, faults=_fault_plan(args.fault_rate),
                              agent_turns=None if args.turns is None else json.loads(args.turns))
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if args.webhook_url is not None:
        secret = os.environ.get("OPENAI_WEBHOOK_SECRET")
        if not secret:
            raise ConfigError("--webhook-url needs the signing secret in $OPENAI_WEBHOOK_SECRET")
        simulator.send_webhooks(args.webhook_url, secret)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(simulator.serve, host=args.host, port=args.port))
            # Said only once the port is bound, so whoever waits for this line can connect.
            print(f"simulator ({args.profile}) listening on {simulator.base_url} "
                  f"(key: {'***' if args.api_key != 'sk-sim' else 'sk-sim'})",
                  file=sys.stderr, flush=True)
            if args.protocol == "agents":
                print(f"Agents API (OpenAI-Beta: agents=v1): {SCRIPT_HELP}",
                      file=sys.stderr, flush=True)
            else:
                print(f"Assistants runs: {RUN_SCRIPT_HELP}", file=sys.stderr, flush=True)

    anyio.run(serve)
    return EXIT_OK


def _fault_plan(rate: float) -> FaultPlan | None:
    """Every endpoint fails `rate` of its requests: 429s, 5xx and connections dropped."""
    from worker.simulator import FaultPlan, FaultRule

    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"--fault-rate must be within [0, 1], got {rate}")
    if rate == 0.0:
        return None
    share = rate / 4
    return FaultPlan(default=FaultRule(p_429=share, retry_after_s=0.05, p_5xx=share,
                                       p_drop_before=share, p_drop_after=share))


def _demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    if args.runs < 1:
        raise ConfigError("--runs must be at least 1")
    ok = anyio.run(lambda: run_demo(runs=args.runs, seed=args.seed, port=args.port,
                                    protocol=args.protocol,
                                    linger_s=args.linger))
    return EXIT_OK if ok else EXIT_FAILURE
