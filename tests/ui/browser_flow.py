"""The browser walk-through used by test_browser.py (kept apart so it can also be run by hand
against a running app: ``python tests/ui/browser_flow.py URL WORKDIR MODEL SHOTS``)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def _fill(page, selector: str, value: str) -> None:
    el = page.locator(selector).first
    el.fill(value)
    el.press("Tab")  # gradio commits a textbox/number on blur


def walk(url: str, model_dir: str, shots: Path, timeout_s: float = 300, max_steps: int = 2) -> dict:
    """Data -> mask preview -> Train 2 steps -> loss plot + finished -> Chat streamed answer."""
    from playwright.sync_api import expect, sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        # ---- Data: demo data, preview, mask ---------------------------------------------------------
        page.get_by_role("tab", name="Data").click()
        _fill(page, "#data-model textarea, #data-model input", model_dir)
        page.locator("#data-demo").click()
        expect(page.locator("#data-paths textarea")).to_have_value(re.compile(r"identity\.jsonl$"))
        page.locator("#data-preview").click()
        trained = page.locator("#data-mask").get_by_text(re.compile(r"\S")).first
        expect(page.locator("#data-stats")).to_contain_text("trained tokens", timeout=120_000)
        expect(trained).to_be_visible()
        seen["report"] = page.locator("#data-report").inner_text()
        page.screenshot(path=str(shots / "1-data.png"), full_page=True)
        page.locator("#data-use").click()
        # ---- Train: a 2-step run ---------------------------------------------------------------------
        page.get_by_role("tab", name="Train").click()
        form = page.locator("#train-form")
        expect(page.locator("#opt-model textarea, #opt-model input").first).to_have_value(model_dir)
        form.get_by_role("tab", name="Data").click()
        expect(page.locator("#opt-data textarea")).to_have_value(re.compile(r"identity\.jsonl"))
        # The form's tabs are the schema's option groups: model, data, method, training.
        expect(form.get_by_role("tab")).to_have_text(["Model", "Data", "Method", "Training"])
        form.get_by_role("tab", name="Training").click()
        for name, value in {"max_steps": str(max_steps), "per_device_train_batch_size": "4",
                            "logging_steps": "1", "save_steps": "1"}.items():
            _fill(page, f"#opt-{name} input", value)
        _fill(page, "#opt-report_to textarea", "none")
        expect(page.locator("#form-cmd")).to_contain_text(f"--max-steps {max_steps}")
        page.locator("#run-start").click()
        expect(page.locator("#run-message")).to_contain_text("started", timeout=30_000)
        expect(page.locator("#run-status")).to_contain_text("running", timeout=60_000)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            status = page.locator("#run-status").inner_text()
            if "finished" in status or "failed" in status:
                break
            time.sleep(2)
        seen["status"] = page.locator("#run-status").inner_text()
        seen["log"] = page.locator("#run-log textarea").input_value()
        # the loss plot (an SVG): its legend names the series only once a line is drawn
        expect(page.locator("#run-loss svg").first).to_be_visible(timeout=30_000)
        expect(page.locator("#run-loss")).to_contain_text("training", timeout=30_000)
        seen["plot"] = page.locator("#run-loss").inner_text()
        time.sleep(2.5)  # one more refresh so the screenshot shows the final state
        page.screenshot(path=str(shots / "2-train.png"))
        run_dir = page.locator("#run-message code").inner_text()
        seen["run_dir"] = run_dir
        # A reloaded page finds the run again from its folder.
        page.reload()
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#run-pick input")).to_have_value(run_dir)
        expect(page.locator("#run-status")).to_contain_text("finished")
        seen["status_after_reload"] = page.locator("#run-status").inner_text()
        # ---- Chat: the run, side by side with its base -------------------------------------------------
        page.get_by_role("tab", name="Chat").click()
        chooser = page.locator("#chat-model input").first
        chooser.click()
        chooser.fill(run_dir)
        chooser.press("Enter")
        page.locator("#chat-input textarea").fill("Who are you?")
        # Record every length the answer pane's text takes as the page updates: a streamed answer
        # passes through several lengths, a whole one appears at once.
        page.evaluate("""() => {
            window.__lengths = [];
            const pane = document.querySelector('#chat-run');
            new MutationObserver(() => window.__lengths.push(pane.innerText.length))
                .observe(pane, {subtree: true, childList: true, characterData: true});
        }""")
        page.locator("#chat-send").click()
        bot = page.locator("#chat-run .bot, #chat-run [data-testid='bot']").last
        expect(bot).to_be_visible(timeout=120_000)
        lengths = []
        for _ in range(240):
            lengths.append(len(bot.inner_text()))
            busy = page.locator("#chat-run .generating, #chat-run .pending").count()
            if len(lengths) > 4 and len(set(lengths[-4:])) == 1 and lengths[-1] > 0 and not busy:
                break
            time.sleep(0.5)
        seen["answer_lengths"] = sorted(set(page.evaluate("window.__lengths")))
        seen["answer"] = bot.inner_text()
        seen["base_answer"] = page.locator("#chat-base .bot, #chat-base [data-testid='bot']").last.inner_text()
        seen["chat_error"] = page.locator("#chat-error").inner_text()
        page.screenshot(path=str(shots / "3-chat.png"), full_page=True)
        browser.close()
    return seen


if __name__ == "__main__":
    url, model, shots = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    print(walk(url, model, shots, max_steps=int(sys.argv[4]) if len(sys.argv) > 4 else 2))
