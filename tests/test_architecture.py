"""The house rules, read from the code (issue 19; docs/architecture.md draws them).

Layers, bottom to top: conversations/ (pure) <- outreach's infrastructure (its top-level modules but the entry
points) <- outreach.messaging <- outreach.study <- outreach.staff <- the entry points (outreach.cli, worker,
serve, demo; webhooks/; console/).  No module imports from a layer above it, module-level imports have no
cycle, conversations/ imports nothing of the project, analysis/ imports no Flask, and no follow-up state or
text status is compared with or set to a bare string outside its one definition."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("conversations", "outreach", "analysis", "webhooks", "console")
ENTRY_POINTS = {"cli", "worker", "serve", "demo"}
LAYERS = {"messaging": 2, "study": 3, "care": 3, "staff": 4, "jobs": 4, "ops": 4}


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] == "conversations":
        return 0
    if parts[0] in ("webhooks", "console"):
        return 5
    if parts[0] == "analysis":
        return 4  # reads the database and the study's definitions; nothing imports it but entry points
    if parts[0] != "outreach":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS[parts[1]]
    if len(parts) > 1 and parts[1] in ENTRY_POINTS:
        return 5
    return 1


def modules():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), ".".join(rel.parts[:-1]), path


def imports(top_level_only: bool = False):
    """(importer, imported module, line) for every import of a project module."""
    for module, package, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                    names = [f"{target}.{a.name}" for a in node.names]
                else:
                    target, names = node.module or "", [f"{node.module}.{a.name}" for a in node.names]
                for name in [target, *names]:
                    if name.split(".")[0] in PACKAGES:
                        yield module, name, node.lineno
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in PACKAGES:
                        yield module, a.name, node.lineno


def known(name: str, names: set[str]) -> str | None:
    while name and name not in names:
        name = name.rpartition(".")[0]
    return name or None


def test_no_module_imports_from_a_layer_above_it():
    back = sorted({(m, t, line) for m, t, line in imports()
                   if layer(t) is not None and layer(m) is not None and layer(t) > layer(m)
                   and not (m.startswith("analysis") and t.startswith("analysis"))})
    assert back == [], "imports against the layers:\n" + "\n".join(f"{m}:{line} -> {t}" for m, t, line in back)


def test_conversations_imports_nothing_of_the_project_and_analysis_no_flask():
    from_conversations = [(m, t) for m, t, _ in imports() if m.startswith("conversations")
                          and not t.startswith("conversations")]
    assert from_conversations == []
    for path in (ROOT / "analysis").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(flask|webhooks|console)\b", path.read_text(), re.M), path


def test_module_level_imports_have_no_cycle():
    names = {m for m, _, _ in modules()}
    graph: dict[str, set[str]] = {m: set() for m in names}
    for m, t, _ in imports(top_level_only=True):
        target = known(t, names)
        if target and target != m and not m.startswith(target + "."):  # a package's own __init__ is not a cycle
            graph[m].add(target)
    seen, stack, cycles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


BARE = re.compile(r"""(\b(status|state)\s*(==|!=|=)\s*|["'](status|state)["']\s*:\s*|\.(status|state)\.in_\(\[?\s*)["']"""
                  r"""(pending|claimed|cancelled|failed|twiml|received|processed|rejected|queued|sent|delivered|"""
                  r"""undelivered|sending|accepted|scheduled|read|receiving|invited|declined|crisis|completed|"""
                  r"""expired|opted_out|undeliverable|q_\w+)["']""")


def test_no_state_or_status_is_compared_with_or_set_to_a_bare_string():
    found = []
    for package in ("outreach", "console", "webhooks", "analysis"):
        for path in [*(ROOT / package).rglob("*.py"), *(ROOT / package).rglob("*.html")]:
            if "migrations" in path.parts or path.name == "states.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if BARE.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == [], "use outreach.states or conversations.machine.FollowUpState:\n" + "\n".join(found)


def test_no_module_level_clock():
    for path in (ROOT / "outreach").rglob("*.py"):
        assert not re.search(r"^\s*global\s", path.read_text(), re.M), f"{path}: a global"


def test_an_alert_is_open_taken_or_resolved(make_patient, twilio, sessions, session):
    from outreach.db import unit_of_work
    from outreach.staff.alerts import alert_queue, open_alerts, resolve_alert, take_alert
    from outreach.states import AlertState
    from outreach.clock import utcnow
    import datetime as dt

    p = make_patient()
    twilio.text(p.phone, "I want to end my life")
    queue = lambda: alert_queue(session, now=utcnow(), overdue_after=dt.timedelta(hours=1))  # noqa: E731
    session.rollback()
    [alert] = queue()
    assert alert.state == AlertState.OPEN
    with unit_of_work(sessions) as s:
        take_alert(s, alert.id, "coordinator@study.example.org")
    session.rollback()
    assert queue()[0].state == AlertState.TAKEN
    with unit_of_work(sessions) as s:
        resolve_alert(s, alert.id, "called, safe", "coordinator@study.example.org")
    session.rollback()
    assert [a.state for a in open_alerts(session, include_resolved=True)] == [AlertState.RESOLVED]
