"""Helpers of the browser tests: in-page checks (layout, accessibility) and UI steps
that several tests share. Everything goes through the UI as a user would."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, expect

from experiments.demo import Behaviour, generate_accounts_csv

# --------------------------------------------------------------------------- checks

#: Elements that stick out of the viewport where the overflow starts (their parent still
#: fits), skipping anything a horizontally scrolling wrapper contains.
OVERFLOW_JS = """() => {
  const width = window.innerWidth;
  const scrolls = el => { for (let a = el.parentElement; a; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
    return false; };
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.classList.length ? '.' + [...el.classList].join('.') : '');
  const offenders = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= width + 1) continue;
    // An absolutely positioned element escapes a scrolling wrapper that is not its
    // containing block.
    const escapes = ['absolute', 'fixed'].includes(getComputedStyle(el).position);
    if (!escapes && scrolls(el)) continue;
    const p = el.parentElement.getBoundingClientRect();
    if (escapes || p.right <= width + 1) {
      offenders.push(
        `${name(el.parentElement)} > ${name(el)} (right edge ${Math.round(r.right)} px)`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: width,
          offenders: offenders.slice(0, 8)};
}"""

#: Accessibility basics: labels, text alternatives, heading order, verdicts in words.
A11Y_JS = """() => {
  const problems = [];
  const describe = el => el.outerHTML.slice(0, 140);
  const text = id => {
    const t = document.getElementById(id); return t ? t.textContent.trim() : ''; };
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || ['submit', 'button', 'reset', 'image'].includes(el.type)) continue;
    const forLabel = el.id && [...document.querySelectorAll('label[for]')].some(
      l => l.htmlFor === el.id && l.textContent.trim());
    const wrapping = el.closest('label');
    if (wrapping && wrapping.textContent.trim()) continue;
    const aria = (el.getAttribute('aria-label') || '').trim();
    const by = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
      .map(text).join('');
    if (!forLabel && !aria && !by) problems.push('form field without a label: ' + describe(el));
  }
  for (const el of document.querySelectorAll('svg, img')) {
    if (el.closest('[aria-hidden="true"]')) continue;
    if (el.tagName.toLowerCase() === 'img') {
      if (!el.hasAttribute('alt')) problems.push('img without alt: ' + describe(el));
      continue;
    }
    if (el.parentElement.closest('svg')) continue;
    const title = el.querySelector(':scope > title');
    const named = (title && title.textContent.trim()) ||
      (el.getAttribute('aria-label') || '').trim() ||
      (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean).map(text).join('');
    if (!named) problems.push('svg without a title: ' + describe(el));
  }
  let previous = 0;
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const level = Number(h.tagName[1]);
    if (level > previous + 1) {
      problems.push(`heading h${level} after h${previous || '(none)'}: ` +
                    `"${h.textContent.trim().slice(0, 60)}"`);
    }
    previous = level;
  }
  for (const el of document.querySelectorAll('[class*="verdict-"]')) {
    if (!el.textContent.trim()) problems.push('verdict shown by colour only: ' + describe(el));
  }
  return problems;
}"""

#: How the focused element shows its focus.
FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  const shadow = s.boxShadow && s.boxShadow !== 'none';
  return {element: el.outerHTML.slice(0, 100), visible: outline || shadow,
          inView: (() => {
            const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; })()};
}"""


def assert_no_horizontal_overflow(page: Page, label: str) -> None:
    report = page.evaluate(OVERFLOW_JS)
    assert report["scrollWidth"] <= report["innerWidth"] + 1, (
        f"{label}: page is {report['scrollWidth']} px wide in a {report['innerWidth']} px window; "
        f"sticking out: {report['offenders']}"
    )


def accessibility_problems(page: Page) -> list[str]:
    return page.evaluate(A11Y_JS)


def focus_problems(page: Page, presses: int = 12) -> list[str]:
    """Tab through the first ``presses`` stops; every focused element must show its focus."""
    page.locator("body").focus()
    problems, seen = [], 0
    for _ in range(presses):
        page.keyboard.press("Tab")
        state = page.evaluate(FOCUS_JS)
        if state is None:
            continue
        seen += 1
        if not state["visible"]:
            problems.append(f"no visible focus: {state['element']}")
        if not state["inView"]:
            problems.append(f"focused element is not displayed: {state['element']}")
    if seen == 0:
        problems.append("Tab never moved the focus")
    return problems


# --------------------------------------------------------------------------- data

WIN = Behaviour(p_expand=0.30, expand_scale=0.40, p_churn=0.04)


def accounts_csv(
    folder: Path, name: str, arms: dict[str, tuple[int, Behaviour]], *, seed: int
) -> Path:
    """An account CSV with a known effect (experiments.demo's generator), written to ``folder``."""
    path = folder / name
    path.write_bytes(
        generate_accounts_csv(np.random.default_rng(seed), arms, prefix=name.split(".")[0][:10])
    )
    return path


# --------------------------------------------------------------------------- UI steps


def option_value(page: Page, select: str, text: str) -> str:
    """The value of the option of ``select`` whose text, stripped, is ``text``."""
    for option in page.locator(f"{select} option").all():
        if option.inner_text().strip() == text:
            return option.get_attribute("value")
    raise AssertionError(f"{select} has no option {text!r}")


def fill_new_experiment(
    page: Page,
    *,
    key: str,
    name: str,
    node: str,
    stage: str,
    treatment: str,
    hypothesis: str = "If we show the upgrade prompt, then NRR rises by 2 points "
    "because more accounts expand.",
) -> None:
    """Fill the registration form (already open) with two variants: control and ``treatment``."""
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_label("Name", exact=True).fill(name)
    page.locator("#node_id").select_option(option_value(page, "#node_id", node))
    page.locator("#stage_id").select_option(option_value(page, "#stage_id", stage))
    page.get_by_label("Hypothesis").fill(hypothesis)
    page.get_by_label("Minimum detectable effect").fill("0.02")
    page.get_by_label("Variant 1 key").fill("control")
    page.get_by_label("Variant 2 key").fill(treatment)
    page.get_by_label("Variant 2 name").fill(treatment.replace("-", " ").capitalize())
    page.get_by_label("Variant 1 is the control").check()


def register_and_start(
    page: Page,
    base: str,
    *,
    key: str,
    treatment: str = "treatment",
    node: str = "Adoption",
    stage: str = "Customer lifecycle · adoption",
) -> None:
    """Register a draft through the form and start it; ends on the experiment page, running."""
    page.goto(f"{base}/experiments/new")
    fill_new_experiment(
        page, key=key, name=f"E2E {key}", node=node, stage=stage, treatment=treatment
    )
    page.get_by_role("button", name="Register draft").click()
    page.wait_for_url(re.compile(rf"/experiments/{re.escape(key)}$"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Start experiment").click()
    expect(page.locator("h1 .badge.status-running")).to_have_text("running")
