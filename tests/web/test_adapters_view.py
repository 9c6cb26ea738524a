"""The adapters view (#/adapters) in real headless Chromium: the registry as a tree by dotted name, an
adapter's details, loading and unloading a persona's stack by picking, export, structured errors, a
phone-width layout, and (slow, real local model) training from a JSONL file uploaded from the page with a
live loss chart."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, expect

from personad.lora.registry import AdapterRegistry
from tests.conftest import RunningDaemon
from tests.mesh.helpers import TINY_BASE, register_chain
from tests.web.shots import save_shot

from .test_page import CHROMIUM, App, _unique

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}"),
]


@pytest.fixture
def phone(browser: Browser, shared_daemon: RunningDaemon) -> Iterator[App]:
    """The page at a phone's width (390 by 844)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    yield App(context.new_page(), shared_daemon)
    context.close()


ACADEMY = {
    "baseline": {"attacks": 40, "attack_success": 0.45, "attack_success_upper95": 0.6, "benign_pass": 0.74},
    "final": {"attacks": 40, "attack_success": 0.025, "attack_success_upper95": 0.129, "benign_pass": 0.73},
    "graduated": True,
    "relative_reduction": 0.944,
}


def _open(app: App, *route: str) -> None:
    app.open()
    app.page.evaluate("hash => { location.hash = hash; }", "#/" + "/".join(["adapters", *route]))
    expect(app.page.locator("#adapters-view")).to_be_visible()
    expect(app.page.locator("#adapters-count")).to_contain_text("adapter")


def _node(app: App, name: str) -> Locator:
    return app.page.locator(f'#adapters-tree li.tree-node[data-name="{name}"]')


def _row(app: App, name: str) -> Locator:
    return _node(app, name).locator(":scope > .tree-row")


def _http(daemon: RunningDaemon, command: str, params: dict[str, Any]) -> dict[str, Any]:
    with daemon.http() as client:
        response = client.post(f"/api/commands/{command}", json=params, timeout=60)
    body = response.json()
    assert body["ok"], body
    return body["result"]


def _persona(daemon: RunningDaemon) -> str:
    persona = _unique("stacker")
    _http(daemon, "persona_create", {"id": persona, "name": "Stack Tester"})  # local provider, not started
    return persona


def _choose_persona(app: App, persona: str) -> None:
    select = app.page.locator("#adapter-stack-persona")
    expect(select.locator(f'option[value="{persona}"]')).to_have_count(1)
    select.select_option(persona)
    expect(app.page.locator("#adapter-stack-current")).to_have_attribute("data-persona", persona)


def _stack(app: App, list_id: str) -> Locator:
    return app.page.locator(f"#{list_id} li[data-name]")


def test_the_tree_nests_by_dotted_name_and_shows_details(
    app: App, shared_daemon: RunningDaemon, tmp_path: Path
) -> None:
    top = _unique("legal")
    names = [top, f"{top}.patent", f"{top}.patent.uspto"]
    register_chain(shared_daemon.home, tmp_path, names)
    AdapterRegistry.for_home(shared_daemon.home).update_metrics(names[2], {"academy": ACADEMY})
    page = app.page
    _open(app)

    # parents → children: a > a.patent > a.patent.uspto, each row with rank, size, short hash, created.
    nested = _node(app, top).locator(f'> ul > li[data-name="{names[1]}"] > ul > li[data-name="{names[2]}"]')
    expect(nested).to_have_count(1)
    meta = _row(app, names[2]).locator(".tree-meta")
    expect(meta.locator(".tree-rank")).to_have_text("r4")
    expect(meta.locator(".tree-size")).to_contain_text("KB")
    manifest = AdapterRegistry.for_home(shared_daemon.home).manifest(names[2])
    expect(meta.locator(".tree-hash")).to_have_text(manifest.lora_hash[:12])
    expect(meta.locator("time")).not_to_be_empty()

    # Collapse and expand with the mouse, then with the keyboard.
    toggle = _row(app, top).locator(".tree-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(_row(app, names[1])).to_be_hidden()
    _row(app, top).locator(".tree-select").focus()
    page.keyboard.press("ArrowRight")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(_row(app, names[1])).to_be_visible()
    page.keyboard.press("ArrowDown")
    expect(_row(app, names[1]).locator(".tree-select")).to_be_focused()
    page.keyboard.press("ArrowLeft")  # a.patent is open: it collapses
    expect(_row(app, names[2])).to_be_hidden()
    page.keyboard.press("ArrowLeft")  # closed: focus goes to its parent
    expect(_row(app, top).locator(".tree-select")).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # open: into the first child
    expect(_row(app, names[2]).locator(".tree-select")).to_be_focused()

    # Enter selects: the route names it, the details show its manifest, chain, children and metrics.
    page.keyboard.press("Enter")
    page.wait_for_function(f"location.hash === '#/adapters/{names[2]}'")
    details = page.locator("#adapter-details")
    expect(details).to_have_attribute("data-state", "ready")
    expect(details).to_have_attribute("data-name", names[2])
    expect(_row(app, names[2])).to_have_attribute("aria-current", "true")
    facts = page.locator("#adapter-manifest")
    expect(facts.locator('[data-field="chain"] dd button')).to_have_text(names)
    expect(facts.locator('[data-field="parents"] dd button')).to_have_text([names[1]])
    expect(facts.locator('[data-field="children"] dd')).to_have_text("none")
    expect(facts.locator('[data-field="rank"] dd')).to_have_text("4")
    expect(facts.locator('[data-field="hash"] dd')).to_have_text(manifest.lora_hash)
    expect(page.locator('#adapter-storage [data-field="chain_bytes"] dd')).to_contain_text("KB")
    expect(page.locator("#adapter-training")).to_have_count(0)  # registered from files, not trained
    final = page.locator('#adapter-academy tr[data-row="final"] td')
    expect(final).to_have_text(["2.5%", "12.9%", "73.0%"])
    expect(page.locator('#adapter-metrics [data-field="graduated"] dd')).to_have_text("yes")
    save_shot(page, "adapters-tree")

    # A parent's details list its children; its chain is itself; no Academy metrics on it.
    facts.locator('[data-field="chain"] dd button').nth(1).click()
    expect(details).to_have_attribute("data-name", names[1])
    expect(facts.locator('[data-field="children"] dd button')).to_have_text([names[2]])
    expect(page.locator("#adapter-no-academy")).to_have_text("no Academy metrics")

    # Another view and back: the selection stays.
    page.click('#view-tabs a[data-view="chat"]')
    expect(page.locator("#adapters-view")).to_be_hidden()
    page.go_back()
    expect(details).to_have_attribute("data-name", names[1])
    expect(_row(app, names[1])).to_have_attribute("aria-current", "true")

    # The route opens an adapter directly (a reload on #/adapters/<name>).
    page.reload()
    app.wait_connected()
    expect(details).to_have_attribute("data-name", names[1])
    expect(details).to_have_attribute("data-state", "ready")
    assert app.errors == []


def test_an_extra_manifest_parent_and_a_namespace(
    app: App, shared_daemon: RunningDaemon, tmp_path: Path
) -> None:
    from tests.lora.helpers import random_peft_adapter

    base = _unique("medical")
    space = _unique("continuum")
    model = register_chain(shared_daemon.home, tmp_path, [base, f"{space}.legal"])
    registry = AdapterRegistry.for_home(shared_daemon.home)
    folder = random_peft_adapter(model, tmp_path / "medtech", seed=9, rank=4)
    registry.register(
        f"{space}.legal.medtech", folder, parents=[base], base_model="tiny", base_model_sha256=TINY_BASE
    )
    _open(app)
    # continuum is a namespace (no adapter of that name): a row without select or pick buttons.
    expect(_node(app, space)).to_have_attribute("data-kind", "namespace")
    expect(_row(app, space).locator(".tree-select, .tree-pick")).to_have_count(0)
    medtech = _node(app, f"{space}.legal").locator(f'li[data-name="{space}.legal.medtech"]')
    expect(medtech.locator(".tree-also")).to_have_text(f"also on {base}")
    assert app.errors == []


def test_load_a_stack_by_picking_then_unload(app: App, shared_daemon: RunningDaemon, tmp_path: Path) -> None:
    top = _unique("stack")
    names = [top, f"{top}.patent"]
    register_chain(shared_daemon.home, tmp_path, names)
    persona = _persona(shared_daemon)
    page = app.page
    _open(app)
    _choose_persona(app, persona)
    expect(page.locator("#adapter-stack-current li")).to_have_text("no adapters: the base model")
    expect(page.locator("#adapter-stack-apply")).to_be_disabled()

    # Pick the child first, then the parent from its details; reorder so the parent comes first.
    _row(app, names[1]).locator(".tree-pick").click()
    _row(app, top).locator(".tree-select").click()
    expect(page.locator("#adapter-details")).to_have_attribute("data-name", top)
    page.click("#adapter-add-to-stack")
    picked = _stack(app, "adapter-stack-picked")
    expect(picked).to_have_count(2)
    expect(picked.locator(".stack-name")).to_have_text([names[1], top])
    page.get_by_role("button", name=f"Move {top} up").click()
    expect(picked.locator(".stack-name")).to_have_text(names)
    page.click("#adapter-stack-apply")
    expect(page.locator("#adapter-stack-result")).to_have_text(f"Applied to @{persona}: {top} → {names[1]}")
    current = _stack(app, "adapter-stack-current")
    expect(current.locator(".stack-name")).to_have_text(names)
    assert _http(shared_daemon, "persona_show", {"persona": persona})["lora_adapters"] == names
    page.locator("#adapter-stack").scroll_into_view_if_needed()
    save_shot(page, "adapters-stack")

    # Unload one, then all.
    page.get_by_role("button", name=f"Unload {names[1]}").click()
    expect(current.locator(".stack-name")).to_have_text([top])
    assert _http(shared_daemon, "persona_show", {"persona": persona})["lora_adapters"] == [top]
    page.click("#adapter-stack-unload-all")
    expect(page.locator("#adapter-stack-current li")).to_have_text("no adapters: the base model")
    assert _http(shared_daemon, "persona_show", {"persona": persona})["lora_adapters"] == []
    expect(page.locator("#adapter-stack-error")).to_be_hidden()
    assert app.errors == []


def test_export_flattens_to_the_artifacts_and_registers(
    app: App, shared_daemon: RunningDaemon, tmp_path: Path
) -> None:
    top = _unique("export")
    names = [top, f"{top}.sub"]
    register_chain(shared_daemon.home, tmp_path, names)
    page = app.page
    _open(app, names[1])
    expect(page.locator("#adapter-details")).to_have_attribute("data-state", "ready")
    expect(page.locator("#adapter-export-out")).to_have_value(f"exports/{names[1]}")
    flat = f"{top}-flat"
    page.fill("#adapter-export-register", flat)
    page.click("#adapter-export-run")
    result = page.locator("#adapter-export-result")
    expect(result.locator('[data-field="r"] dd')).to_have_text("8")  # 4 + 4: the chain in one adapter
    expect(result.locator('[data-field="adapters"] dd')).to_have_text(f"{top} → {names[1]}")
    expect(result.locator('[data-field="path"] dd')).to_have_text(f"exports/{names[1]}")
    artifacts = shared_daemon.daemon.sessions.get(app.session_id).artifacts_dir
    config = json.loads((artifacts / "exports" / names[1] / "adapter_config.json").read_text())
    assert config["r"] == 8
    assert (artifacts / "exports" / names[1] / "adapter_model.safetensors").stat().st_size > 0
    # The registered copy appears in the tree (a top-level adapter) and opens from the result.
    expect(_node(app, flat)).to_have_count(1)
    result.locator('[data-field="registered"] button').click()
    expect(page.locator("#adapter-details")).to_have_attribute("data-name", flat)
    expect(page.locator('#adapter-training [data-field="flattened_from"] dd')).to_contain_text(names[1])

    # Delete asks for a second press; a parent others build on is refused (adapter_in_use).
    page.click("#adapter-delete")
    expect(page.locator("#adapter-delete")).to_have_text(f"Confirm delete {flat}")
    page.click("#adapter-delete")
    expect(_node(app, flat)).to_have_count(0)
    page.wait_for_function("location.hash === '#/adapters'")
    assert not AdapterRegistry.for_home(shared_daemon.home).exists(flat)
    _row(app, top).locator(".tree-select").click()
    expect(page.locator("#adapter-details")).to_have_attribute("data-name", top)
    expect(page.locator("#adapter-details")).to_have_attribute("data-state", "ready")
    page.click("#adapter-delete")
    expect(page.locator("#adapter-delete")).to_have_text(f"Confirm delete {top}")
    page.click("#adapter-delete")
    expect(page.locator("#adapter-delete-error")).to_have_attribute("data-code", "adapter_in_use")
    expect(page.locator("#adapter-delete")).to_have_text("Delete…")
    expect(_node(app, top)).to_have_count(1)
    assert app.errors == []


def test_daemon_errors_are_shown_with_their_code(
    app: App, shared_daemon: RunningDaemon, tmp_path: Path
) -> None:
    gone = _unique("gone")
    orphan = _unique("orphan")
    register_chain(shared_daemon.home, tmp_path, [gone])
    register_chain(shared_daemon.home, tmp_path, [orphan, f"{orphan}.kid"])
    persona = _persona(shared_daemon)
    page = app.page
    _open(app)
    _choose_persona(app, persona)
    error = page.locator("#adapter-stack-error")

    # An adapter deleted after it was picked: adapter_not_found.
    _row(app, gone).locator(".tree-pick").click()
    _http(shared_daemon, "lora_delete", {"name": gone})
    expect(_node(app, gone)).to_have_count(0)  # the lora_deleted event refreshes the tree
    page.click("#adapter-stack-apply")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "adapter_not_found")
    expect(error.locator(".error-code")).to_have_text("adapter_not_found")
    expect(error.locator(".error-message")).to_contain_text(gone)

    # A child whose parent vanished from disk: adapter_parent_missing, on apply and in its details.
    shutil.rmtree(AdapterRegistry.for_home(shared_daemon.home).folder(orphan))
    page.click("#adapter-stack-clear")
    page.click("#adapters-refresh")
    expect(_node(app, orphan)).to_have_attribute("data-kind", "namespace")
    _row(app, f"{orphan}.kid").locator(".tree-pick").click()
    page.click("#adapter-stack-apply")
    expect(error).to_have_attribute("data-code", "adapter_parent_missing")
    expect(error.locator(".error-message")).to_contain_text(orphan)
    _row(app, f"{orphan}.kid").locator(".tree-select").click()
    expect(page.locator("#adapter-chain-error")).to_contain_text(orphan)
    assert _http(shared_daemon, "persona_show", {"persona": persona})["lora_adapters"] == []

    # A bad name for training is refused in the page, before anything is uploaded.
    page.fill("#adapter-train-name", "Not A Name")
    page.set_input_files(
        "#adapter-train-file", files=[{"name": "x.jsonl", "mimeType": "text/plain", "buffer": b"{}\n"}]
    )
    page.click("#adapter-train-start")
    train_error = page.locator("#adapter-train-error")
    expect(train_error).to_have_attribute("data-code", "invalid_params")
    expect(page.locator("#adapter-train-name")).to_have_attribute("aria-invalid", "true")
    page.fill("#adapter-train-name", _unique("bad"))
    page.click("#adapter-train-start")  # the file's line has no messages
    expect(train_error).to_have_attribute("data-code", "invalid_data")
    assert app.errors == []


def test_the_view_fits_a_phone(phone: App, shared_daemon: RunningDaemon, tmp_path: Path) -> None:
    top = _unique("phone")
    names = [top, f"{top}.contracts", f"{top}.contracts.international-arbitration"]
    register_chain(shared_daemon.home, tmp_path, names)
    page = phone.page
    _open(phone, names[2])
    expect(page.locator("#adapter-details")).to_have_attribute("data-state", "ready")
    save_shot(page, "adapters-mobile")
    _row(phone, names[1]).locator(".tree-pick").click()
    expect(page.locator("#adapter-stack-picked li[data-name]")).to_have_count(1)
    overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], overflow
    for card in ("#adapter-stack", "#adapter-train", "#adapter-details"):
        box = page.locator(card).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (card, box)
    assert phone.errors == []


# ---------------------------------------------------------------------------------------------------------
# Slow: the real local model trains from a file uploaded from the page.

TWO = [
    [{"role": "user", "content": "What is 1 plus 2?"}, {"role": "assistant", "content": "3."}],
    [{"role": "user", "content": "What is 3 plus 4?"}, {"role": "assistant", "content": "7."}],
]


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch thread in the training child process (the box is small and shared)."""
    from personad.models.local.engine import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, "1")


@pytest.mark.slow
def test_train_from_an_uploaded_file_with_a_live_loss_chart(
    app: App, shared_daemon: RunningDaemon, one_thread: None
) -> None:
    page = app.page
    top = _unique("upload")
    _open(app)
    jsonl = "".join(json.dumps({"messages": chat}) + "\n" for chat in TWO).encode()
    page.set_input_files(
        "#adapter-train-file", files=[{"name": "two.jsonl", "mimeType": "application/jsonl", "buffer": jsonl}]
    )
    page.fill("#adapter-train-name", top)
    page.fill("#adapter-train-rank", "4")
    page.fill("#adapter-train-steps", "4")
    page.fill("#adapter-train-lr", "0.005")
    page.click("#adapter-train-start")
    card = page.locator("#adapter-train")
    expect(page.locator("#adapter-train-cancel")).to_be_visible()
    chart = page.locator("#adapter-train-chart")
    # The first step comes once the child process has loaded the model.
    expect(chart).not_to_have_attribute("data-points", "0", timeout=300_000)
    expect(chart.locator("canvas")).to_have_count(1)
    expect(card).to_have_attribute("data-state", "succeeded", timeout=300_000)
    expect(chart).to_have_attribute("data-points", "4")
    assert int(page.locator("#adapter-train-progress").get_attribute("value") or 0) == 4
    result = page.locator("#adapter-train-result")
    expect(result.locator('[data-field="steps"] dd')).to_have_text("4")
    expect(result.locator('[data-field="name"] dd')).to_have_text(top)
    expect(page.locator("#adapter-train-cancel")).to_be_hidden()
    # The progress bar, the loss chart and the new adapter's summary, beside its details.
    page.eval_on_selector("#adapter-train-chart", "node => node.scrollIntoView({block: 'center'})")
    save_shot(page, "adapters-training")

    # The file went to the session's artifacts; the tree and the details show the new adapter.
    artifacts = shared_daemon.daemon.sessions.get(app.session_id).artifacts_dir
    assert (artifacts / "training" / f"{top}.jsonl").read_bytes() == jsonl
    expect(_node(app, top)).to_have_count(1)
    page.wait_for_function(f"location.hash === '#/adapters/{top}'")
    expect(page.locator('#adapter-training [data-field="steps"] dd')).to_have_text("4")
    assert app.errors == []


@pytest.mark.slow
def test_cancel_a_training_from_the_page(app: App, one_thread: None) -> None:
    page = app.page
    _open(app)
    jsonl = "".join(json.dumps({"messages": chat}) + "\n" for chat in TWO).encode()
    page.set_input_files(
        "#adapter-train-file", files=[{"name": "two.jsonl", "mimeType": "application/jsonl", "buffer": jsonl}]
    )
    name = _unique("cancelled")
    page.fill("#adapter-train-name", name)
    page.fill("#adapter-train-steps", "5000")
    page.click("#adapter-train-start")
    chart = page.locator("#adapter-train-chart")
    expect(chart).not_to_have_attribute("data-points", "0", timeout=300_000)
    page.click("#adapter-train-cancel")
    expect(page.locator("#adapter-train")).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#adapter-train-status")).to_have_text(f"Training {name} was cancelled.")
    expect(page.locator("#adapter-train-cancel")).to_be_hidden()
    expect(page.locator("#adapter-train-start")).to_be_enabled()
    expect(_node(app, name)).to_have_count(0)
    assert app.errors == []
